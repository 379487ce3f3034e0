"""`gbpipe auto` within its time budget: holdout score, wall time over the budget, and the default LightGBM.

For each table and budget, `gbpipe auto --time-budget B` runs as a user runs it (a fresh process, its own runs
folder, so nothing is reused from another budget) and is timed from the outside, interpreter start-up
included. The default LightGBM is the run's own first member (`lgb`): the experiment's [model] on the same
folds, scored on the same holdout rows. Tables: scikit-learn's bundled breast_cancer (binary), wine
(multiclass) and diabetes (regression); the shared adult (binary) and california_housing (regression) configs;
and adult's marital status (multiclass, seven classes) from the shared adult table.

Targets: wall time at most 1.1x the budget on every table; the auto score never worse than the default
LightGBM's; the score at the longest budget at least the score at the shortest. The last line is one JSON
object.

    flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_auto.py                      # 60 s and 300 s
    .venv/bin/python bench/bench_auto.py --budgets 10 --tables breast_cancer               # a quick check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.engine.spec import available_cores

ADULT = "data/raw/adult/adult.parquet"
TABLES = {
    "breast_cancer": {
        "data": {"train": "sklearn:breast_cancer", "target": "target", "task": "binary", "test_size": 0.25}
    },
    "wine": {"data": {"train": "sklearn:wine", "target": "target", "task": "multiclass", "test_size": 0.25}},
    "diabetes": {"data": {"train": "sklearn:diabetes", "target": "target", "task": "regression", "test_size": 0.25}},
    "adult": ROOT / "configs" / "adult.toml",
    "california_housing": ROOT / "configs" / "california_housing.toml",
    "adult_marital": {
        "data": {"train": ADULT, "split_column": "split", "target": "marital-status", "task": "multiclass"},
        "model": {"metric": "logloss"},
    },
}
WALL_TARGET = 1.1


def config_path(name: str, folder: Path) -> Path:
    """The table's experiment file: a shared config as it is, or one written for a bundled table."""
    spec = TABLES[name]
    if isinstance(spec, Path):
        return spec
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(spec))
    return path


def run_auto(name: str, budget: float, threads: int) -> dict:
    """One `gbpipe auto` process in a runs folder of its own; its scores, the default LightGBM's, and the wall time."""
    with tempfile.TemporaryDirectory(prefix=f"bench_auto_{name}_") as tmp:
        config = config_path(name, Path(tmp))
        command = [
            sys.executable, "-m", "pipeline", "auto", "--config", str(config), "--time-budget", f"{budget}s", "-q",
            "--set", f"experiment.runs_dir={json.dumps(str(Path(tmp) / 'runs'))}",
            "--set", f"experiment.name={json.dumps(name)}",
            "--set", f"model.num_threads={threads}",
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"gbpipe auto failed on {name} at {budget}s (exit {done.returncode}):\n{done.stderr}")
        run = Path(done.stdout.strip().splitlines()[-1])
        scores = json.loads((run / "ensemble" / "scores.json").read_text())
        steps = json.loads((run / "auto" / "steps.json").read_text())
    default = scores["models"]["lgb"]
    return {
        "metric": scores["metric"],
        "greater_is_better": scores["greater_is_better"],
        "score": scores.get("holdout_score"),
        "oof_score": scores["oof_score"],
        "default_lgb_score": default.get("holdout_score"),
        "default_lgb_oof": default["oof_score"],
        "recommended": scores["recommended"],
        "members": scores["members"],
        "combiners": scores["combiners"],
        "skipped_for_time": steps["skipped_for_time"],
        "wall_seconds": round(wall, 2),
        "wall_over_budget": round(wall / budget, 4),
    }


def at_least(a: float, b: float, greater_is_better: bool) -> bool:
    return a >= b if greater_is_better else a <= b


def summarize(results: dict[str, dict[str, dict]], budgets: list[float]) -> dict:
    """The three targets over every table and budget."""
    walls = [r["wall_over_budget"] for table in results.values() for r in table.values()]
    never_worse, longer_better = {}, {}
    for name, by_budget in results.items():
        runs = list(by_budget.values())
        never_worse[name] = all(at_least(r["score"], r["default_lgb_score"], r["greater_is_better"]) for r in runs)
        if len(budgets) > 1:
            short, long = by_budget[str(min(budgets))], by_budget[str(max(budgets))]
            longer_better[name] = at_least(long["score"], short["score"], long["greater_is_better"])
    wall_max = max(walls) if walls else None
    return {
        "wall_over_budget_max": wall_max,
        "wall_target": WALL_TARGET,
        "never_worse_than_default": never_worse,
        "longest_at_least_as_good_as_shortest": longer_better,
        "targets_met": bool(
            wall_max is not None
            and wall_max <= WALL_TARGET
            and all(never_worse.values())
            and all(longer_better.values())
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 300.0], help="seconds (default 60 300)")
    parser.add_argument("--tables", nargs="+", choices=sorted(TABLES), default=list(TABLES), help="default: all")
    parser.add_argument(
        "--threads",
        type=int,
        default=available_cores(),
        help="LightGBM and scikit-learn threads of each run (default: every core; never more)",
    )
    args = parser.parse_args()
    if not 1 <= args.threads <= available_cores():
        parser.error(f"--threads must be between 1 and the {available_cores()} cores available")
    results: dict[str, dict[str, dict]] = {}
    for name in args.tables:
        for budget in args.budgets:
            result = run_auto(name, budget, args.threads)
            results.setdefault(name, {})[str(budget)] = result
            print(
                f"{name} at {budget:g}s: {result['metric']} {result['score']} (default LightGBM "
                f"{result['default_lgb_score']}), recommended {result['recommended']}, wall {result['wall_seconds']}s "
                f"({result['wall_over_budget']}x), skipped for time: {', '.join(result['skipped_for_time']) or '-'}",
                flush=True,
            )
    print(
        json.dumps(
            {
                "bench": "auto",
                "budgets": args.budgets,
                "tables": args.tables,
                "threads": args.threads,
                **summarize(results, args.budgets),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
