"""Names and output paths given by the user: the one check each goes through before it becomes a path.

A name (experiment, study, run id, selection id, ensemble member) becomes a folder or file name under the
experiment's folder, so it must stay a plain name there: no separators, no `.`/`..`, no control
characters, and short enough for the file system once gbpipe adds its suffixes. An output path
(`predict --output`, `report --compare --output`) may point anywhere except into what gbpipe manages:
a stage folder (it has a manifest), a folder being written, the experiment's pointer and caches.
"""

from __future__ import annotations

import re
from pathlib import Path

from .artifacts import LATEST, MANIFEST, PARTIAL_SUFFIX
from .errors import ConfigError

# File systems allow 255 bytes per name; gbpipe adds up to ~30 (".<pid>.partial", ".journal.flock", ...).
MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
NAME_RULE = (
    f"a plain name of at most {MAX_NAME_LENGTH} characters: letters, digits, '_', '-' and '.', "
    "starting with a letter, digit or '_' (so not '.', '..', a path or an option)"
)
# What gbpipe keeps in an experiment's folder beside its runs: a run id must not take these names.
MANAGED = frozenset({LATEST, MANIFEST, "folds", "features", "tune", "select", "member_cache", "compare"})


def name_problem(name: object) -> str | None:
    """Why `name` cannot be a folder name (NAME_RULE), or None when it can."""
    text = name if isinstance(name, str) else None
    if text is None or not _NAME.fullmatch(text) or len(text) > MAX_NAME_LENGTH:
        return f"must be {NAME_RULE}; it becomes a folder name inside the experiment's folder (e.g. 'baseline_v2')"
    if text.endswith(PARTIAL_SUFFIX):
        return f"must not end in {PARTIAL_SUFFIX!r}, the suffix of folders being written"
    return None


def check_name(name: object, key: str) -> str:
    """`name` when it is a plain name (NAME_RULE); ConfigError naming `key`, the rule and the value."""
    problem = name_problem(name)
    if problem is not None:
        shown = name if not isinstance(name, str) or len(name) <= 60 else name[:60] + "..."
        raise ConfigError(f"{key} = {shown!r}: {problem}")
    return name


def check_run_id(name: object, key: str) -> str:
    """A run or selection id: a plain name that is not one of the experiment folder's own entries."""
    text = check_name(name, key)
    if text in MANAGED:
        raise ConfigError(
            f"{key} = {text!r} is a name gbpipe uses in the experiment's folder ({', '.join(sorted(MANAGED))}); "
            "choose another id, or leave it out to get a new one"
        )
    return text


def check_output_path(output: Path, key: str, experiment_dirs: tuple[Path, ...] = ()) -> Path:
    """Refuse an output inside a stage folder (it has a manifest), a folder being written (`*.partial`), or
    over what an experiment's folder holds beside its runs (LATEST, the folds and feature caches, studies)."""
    output = Path(output)
    resolved = output.resolve()
    for parent in resolved.parents:
        if (parent / MANIFEST).is_file() or parent.name.endswith(PARTIAL_SUFFIX):
            raise ConfigError(
                f"{key} {output} is inside the stage folder {parent}, whose files gbpipe wrote and checks by "
                "hash; it is never modified. Write elsewhere, e.g. predictions/out.csv"
            )
    for exp_dir in (Path(d).resolve() for d in experiment_dirs):
        inner = resolved.relative_to(exp_dir).parts if resolved.is_relative_to(exp_dir) else ()
        if inner and inner[0] in MANAGED - {"compare"}:
            raise ConfigError(
                f"{key} {output} is {exp_dir / inner[0]}, or inside it, which gbpipe manages for the experiment "
                f"(its {LATEST} pointer and caches). Write elsewhere, e.g. predictions/out.csv"
            )
    if resolved.name in (LATEST, MANIFEST):
        raise ConfigError(f"{key} {output}: {resolved.name} is a file name gbpipe manages; choose another name")
    return output
