"""Untrusted files: gbpipe never unpickles anything.

Models are LightGBM text, tables parquet, metadata JSON/TOML. A static scan of the packages finds
no pickle-family loader, and skops (the ensemble stage's format for scikit-learn members) is only
ever loaded with an explicit list of trusted types. At run time, loading and predicting with a run
works with every unpickler disabled.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pandas as pd

from tests.helpers.paths import ROOT
from tests.helpers.reliability import cli

PACKAGES = ["pipeline", "features"]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
PICKLE_CALLS = {"read_pickle", "to_pickle"}  # pandas
TEXT_SUFFIXES = {
    ".txt",
    ".json",
    ".parquet",
    ".toml",
    ".md",
    ".html",
    ".png",
    ".svg",
    ".csv",
    ".journal",
    ".log",
    ".skops",
}


def unsafe_loads(source: str, filename: str = "<source>") -> list[str]:
    """Lines of `source` that import a pickle-family module, call pandas' pickle I/O, np.load with
    allow_pickle=True, torch.load, or skops' load without an explicit (non-True) `trusted=` list."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{where} from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            short = name.rsplit(".", 1)[-1]
            if short in PICKLE_CALLS:
                found.append(f"{where} {name}()")
            elif short == "load" and name.split(".")[0] in ("np", "numpy") and _is_true(keywords.get("allow_pickle")):
                found.append(f"{where} {name}(allow_pickle=True)")
            elif name in ("torch.load",):
                found.append(f"{where} {name}()")
            elif short in ("load", "loads") and ("skops" in name or name.split(".")[0] in ("sio", "skops_io")):
                trusted = keywords.get("trusted")
                if trusted is None or _is_true(trusted):
                    found.append(f"{where} {name}() without an explicit list of trusted types")
    return found


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def package_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_scan_catches_every_unpickling_pattern():
    """The scanner itself must fail on each pattern, or the package scan below could never fail."""
    snippets = [
        "import pickle\npickle.load(f)",
        "from joblib import load",
        "import cloudpickle",
        "df = pd.read_pickle(path)",
        "np.load(p, allow_pickle=True)",
        "torch.load(p)",
        "import skops.io as sio\nsio.load(p, trusted=True)",
        "skops.io.load(p)",
    ]
    for snippet in snippets:
        assert unsafe_loads(snippet), snippet
    safe = ["np.load(p)", "sio.load(p, trusted=TRUSTED_TYPES)", "lgb.Booster(model_str=text)", "json.loads(t)"]
    for snippet in safe:
        assert not unsafe_loads(snippet), snippet


def test_no_module_of_gbpipe_unpickles():
    files = package_files()
    assert len(files) >= 10
    found = [hit for path in files for hit in unsafe_loads(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "unpickling code found:\n" + "\n".join(found)


def test_a_run_holds_only_non_executable_formats(project):
    files = [p for p in project.baseline.rglob("*") if p.is_file()]
    assert files and all(p.suffix in TEXT_SUFFIXES for p in files), [p.name for p in files]


def test_loading_and_predicting_work_with_every_unpickler_disabled(project, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for attr in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, attr, refuse)
    pd.read_parquet(project.data["test"]).drop(columns="income").to_parquet(project.root / "new.parquet")
    code, err = cli(
        capsys,
        "predict",
        "--run",
        project.baseline,
        "--input",
        project.root / "new.parquet",
        "--output",
        project.root / "out.parquet",
    )
    assert code == 0, err
    assert len(pd.read_parquet(project.root / "out.parquet")) == 400
