"""Where a config may point: relative paths stay inside the project, absolute paths are explicit.

The project root is the working directory (where `make` and `gbpipe` run). A relative path in a
config (data.train, data.test, experiment.runs_dir) is resolved against it, symlinks included, and
must stay inside it: `../../elsewhere` or a symlink leading out of the project is refused, so a
config copied from somewhere else cannot make gbpipe read or write outside the project unnoticed.
An absolute path is taken as given: the user asked for that place explicitly.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.artifacts import inside
from pipeline.core.errors import ConfigError

from .experiment import SKLEARN_PREFIX, Config


def check_project_path(key: str, value: str, root: Path) -> Path:
    """The path of config key `key`; ConfigError when a relative one leads outside `root`."""
    path = Path(value)
    if path.is_absolute():
        return path
    if not inside(root / path, root):
        how = "'..'" if ".." in path.parts else "a symlink"
        raise ConfigError(
            f"{key} = {value!r} leads outside the project root {root} (via {how}; it resolves to "
            f"{(root / path).resolve()}); relative paths must stay inside the project. "
            "Give an absolute path if you really mean a place outside it"
        )
    return root / path


def check_config_paths(cfg: Config, root: Path | None = None) -> None:
    """Check every path of the config against the project root (default: the working directory)."""
    root = Path.cwd() if root is None else Path(root)
    paths = {"data.train": cfg.data.train, "data.test": cfg.data.test, "experiment.runs_dir": cfg.experiment.runs_dir}
    for key, value in paths.items():
        if value is not None and not value.startswith(SKLEARN_PREFIX):
            check_project_path(key, value, root)
