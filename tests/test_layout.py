"""The package layout holds: each stage's package imports only the packages below it, nothing imports in a
cycle (not even through imports inside functions), `features` uses nothing of `pipeline` beyond `core`,
nothing happens on import, and training and tuning never load matplotlib.

The static checks read every import statement (module level and inside functions); the runtime checks
import each package in a fresh interpreter, so what an earlier test imported cannot hide anything."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

# Each package and the packages it may import: the workflow, bottom to top.
LAYERS = {
    "pipeline.core": set(),
    "pipeline.compute": {"pipeline.core"},
    "features": {"pipeline.core"},
    "pipeline.config": {"pipeline.core", "pipeline.compute", "features"},
    "pipeline.data": {"pipeline.core", "pipeline.compute", "features", "pipeline.config"},
    "pipeline.engine": {"pipeline.core", "pipeline.compute", "pipeline.config", "pipeline.data"},
    "pipeline.train": {
        "pipeline.core",
        "pipeline.compute",
        "features",
        "pipeline.config",
        "pipeline.data",
        "pipeline.engine",
    },
    "pipeline.tune": {"pipeline.core", "pipeline.compute", "pipeline.config", "pipeline.data", "pipeline.engine"},
    "pipeline.importance": {"pipeline.core", "pipeline.compute", "pipeline.config", "pipeline.data", "pipeline.engine"},
    "pipeline.ensemble": {"pipeline.core", "pipeline.compute", "pipeline.config", "pipeline.data", "pipeline.engine"},
    "pipeline.drift": {"pipeline.core", "pipeline.compute", "pipeline.config", "pipeline.data", "pipeline.engine"},
    "pipeline.auto": {
        "pipeline.core",
        "pipeline.compute",
        "pipeline.config",
        "pipeline.data",
        "pipeline.engine",
        "pipeline.tune",
        "pipeline.ensemble",
    },
    "pipeline.report": {"pipeline.core", "pipeline.config", "pipeline.data"},
    "pipeline.predict": {
        "pipeline.core",
        "pipeline.compute",
        "pipeline.config",
        "pipeline.data",
        "pipeline.engine",
        "pipeline.ensemble",
        "pipeline.drift",
    },
}
ALWAYS = {"pipeline"}  # the facade, which any `pipeline.x` import runs
TOP = {"pipeline.cli", "pipeline.__main__"}  # the command line, above every package


def modules() -> dict[str, Path]:
    found = {}
    for package in ("pipeline", "features"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "pipeline" and len(parts) > 1 else parts[0]


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (inside functions too)."""
    found = set()
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_in_a_cycle():
    assert find_cycle(graph()) is None


def test_packages_import_only_the_packages_below_them():
    wrong = []
    for module, targets in graph().items():
        package = package_of(module)
        if package not in LAYERS:
            continue  # the CLI and the facades sit on top
        for target in targets:
            target_package = package_of(target)
            if target_package != package and target_package not in LAYERS[package] | ALWAYS:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_layer_table_has_no_cycle_and_names_every_package():
    edges = {package: set(below) for package, below in LAYERS.items()}
    assert find_cycle(edges) is None
    packages = {package_of(m) for m in modules()} - ALWAYS - TOP
    assert packages == set(LAYERS)


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    # the check above must be able to fail: a cycle hidden inside a function is still a cycle
    (tmp_path / "a.py").write_text("def f():\n    from .b import g\n")
    known = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py"}
    edges = {"pkg.a": imports_of("pkg.a", tmp_path / "a.py", known), "pkg.b": {"pkg.a"}}
    assert find_cycle(edges) == ["pkg.a", "pkg.b", "pkg.a"]


def loaded_after_import(packages: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after importing every module of `packages`."""
    names = [
        m for m in modules() if m != "pipeline.__main__" and any(m == p or m.startswith(p + ".") for p in packages)
    ]
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def below(package: str) -> set[str]:
    """Every package `package` may reach, through the packages it imports."""
    reached, todo = set(), [package]
    while todo:
        for lower in LAYERS[todo.pop()] - reached:
            reached.add(lower)
            todo.append(lower)
    return reached


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_each_package_loads_only_what_lies_below_it(package):
    loaded = {package_of(m) for m in loaded_after_import([package]) if package_of(m) in LAYERS}
    assert loaded - {package} <= below(package)


def test_features_uses_nothing_of_pipeline_beyond_core():
    loaded = loaded_after_import(["features"])
    assert (
        sorted(m for m in loaded if m.startswith("pipeline.") and not m.startswith("pipeline.core") and m not in ALWAYS)
        == []
    )


def test_training_and_tuning_never_load_matplotlib():
    loaded = loaded_after_import(["pipeline.train", "pipeline.tune"])
    assert "lightgbm" in loaded  # they did load what training needs
    assert not any(m == "matplotlib" or m.startswith("matplotlib.") for m in loaded)


def test_importing_changes_nothing_outside_the_interpreter():
    """No import side effects: with the libraries gbpipe uses already imported (some of them set environment
    variables of their own), importing all of gbpipe leaves the environment and the working folder as they were."""
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, os; before = dict(os.environ); import pipeline, features; "
            "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(bare.stdout) == {}, "importing the packages alone (no library loaded yet) set variables"
    ours = sorted(set(modules()) - {"pipeline.__main__"})
    libraries = sorted(
        {m.partition(".")[0] for m in loaded_after_import(["pipeline", "features"])}
        - {"pipeline", "features", "tests"}
        - set(sys.builtin_module_names)
    )
    code = (
        "import importlib, json, os\n"
        f"for name in {libraries!r}:\n    try:\n        importlib.import_module(name)\n"
        "    except Exception:\n        pass\n"
        "before = dict(os.environ)\n"
        f"for name in {ours!r}:\n    importlib.import_module(name)\n"
        "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))"
    )
    listing = sorted(p.name for p in ROOT.iterdir())
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {}
    assert sorted(p.name for p in ROOT.iterdir()) == listing


def test_the_code_passes_the_linter_and_the_formatter():
    """`make lint`: ruff's rules, its formatting and the 120-character line hold for every file it checks."""
    folders = ["pipeline", "features", "tests", "bench"]
    for command in (["check", "--output-format", "concise"], ["format", "--check"]):
        done = subprocess.run([sys.executable, "-m", "ruff", *command, *folders], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
