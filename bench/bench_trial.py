"""The cost of one tuning trial, and of importing the CLI and the training and tuning stages.

A trial is `Evaluator.evaluate` of the tuning stage on the experiment's saved folds with the search
space's default parameters, after one warm-up trial (the binned Dataset is then cached, as in a study).
Each checkout runs in its own process, from this project's folder (same data, same feature cache);
processes alternate between checkouts, and the figures are medians over all timed trials.

Imports: `python -X importtime -m pipeline train --help`, and importing the training and tuning stage
modules in a fresh interpreter: seconds, modules loaded, and whether matplotlib was among them.

    flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_trial.py --against ../old-checkout

`--against PATH` times another checkout (one with the layout before the stage packages) side by side
with this one. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside a child process whose sys.path starts with the checkout under test; knows both layouts.
TRIAL_CODE = r"""
import json, sys, time
sys.path.insert(0, sys.argv.pop(1))  # the checkout under test, ahead of the working folder
try:
    from pipeline.data.prepare import prepare
    from pipeline.tune.evaluator import Evaluator
    from pipeline.tune.trials import base_spec
    from pipeline.tune.space import build_space
except ImportError:  # the layout before the stage packages
    from pipeline.prepare import prepare
    from pipeline.tune import Evaluator, base_spec
    from pipeline.search_space import build_space
from pipeline import load_config

config, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = load_config(config, [f"model.num_threads={threads}"])
prep = prepare(cfg)
space = build_space(cfg)
evaluator = Evaluator(prep, base_spec(cfg, prep, space, threads))
params = dict(space.default_trial)
evaluator.evaluate(params)  # warm-up: bins the Dataset once, as the first trial of a study does
seconds = []
for _ in range(repeats):
    start = time.perf_counter()
    value = evaluator.evaluate(params).value
    seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "oof_score": value}))
"""

STAGE_MODULES = {"new": ("pipeline.train.run", "pipeline.tune.run"), "old": ("pipeline.train", "pipeline.tune")}
IMPORT_CODE = r"""
import importlib, json, sys, time
sys.path.insert(0, sys.argv.pop(1))
names = sys.argv[1:]
start = time.perf_counter()
for name in names:
    importlib.import_module(name)
print(json.dumps({"seconds": time.perf_counter() - start, "modules": len(sys.modules),
                  "matplotlib": any(m.split(".")[0] == "matplotlib" for m in sys.modules)}))
"""


def run_child(checkout: Path, code: str, args: list[str]) -> dict:
    """Run `code` in a fresh interpreter from this project's folder (its data and caches) with `checkout`'s
    packages first on the path."""
    done = subprocess.run([sys.executable, "-c", code, str(checkout), *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{checkout} {args}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def layout_of(checkout: Path) -> str:
    return "new" if (checkout / "pipeline" / "train" / "__init__.py").is_file() else "old"


def cli_import(checkout: Path) -> dict:
    """`python -X importtime -m pipeline train --help`: total import time (the sum over top-level imports),
    modules imported, matplotlib among them or not."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "train", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")][1:]
    top = [int(cumulative) for _, cumulative, name in rows if not name.startswith("  ")]
    names = [name.strip() for _, _, name in rows]
    return {
        "seconds": sum(top) / 1e6,
        "modules": len(names),
        "matplotlib": any(n.split(".")[0] == "matplotlib" for n in names),
    }


def measure(checkouts: dict[str, Path], configs: list[str], threads: int, rounds: int, repeats: int) -> dict:
    trial: dict[str, dict[str, list[float]]] = {name: {c: [] for c in configs} for name in checkouts}
    scores: dict[str, dict[str, float]] = {name: {} for name in checkouts}
    for config in configs:
        for round_ in range(rounds):
            order = list(checkouts) if round_ % 2 == 0 else list(reversed(checkouts))
            for name in order:
                out = run_child(checkouts[name], TRIAL_CODE, [config, str(threads), str(repeats)])
                trial[name][config] += out["seconds"]
                scores[name][config] = out["oof_score"]
                print(
                    f"{name} {config} round {round_ + 1}: " + " ".join(f"{s:.2f}s" for s in out["seconds"]),
                    file=sys.stderr,
                )
    imports = {}
    for name, checkout in checkouts.items():
        stages = STAGE_MODULES[layout_of(checkout)]
        runs = [run_child(checkout, IMPORT_CODE, list(stages)) for _ in range(rounds * 2)]
        clis = [cli_import(checkout) for _ in range(rounds * 2)]
        imports[name] = {
            "stages": {
                "seconds": statistics.median(r["seconds"] for r in runs),
                "modules": runs[0]["modules"],
                "matplotlib": runs[0]["matplotlib"],
            },
            "cli_train_help": {
                "seconds": statistics.median(r["seconds"] for r in clis),
                "modules": clis[0]["modules"],
                "matplotlib": clis[0]["matplotlib"],
            },
        }
    return {
        "trial_seconds": {n: {c: statistics.median(v) for c, v in t.items()} for n, t in trial.items()},
        "oof_score": scores,
        "imports": imports,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout to time side by side with this one")
    parser.add_argument("--configs", nargs="+", default=["configs/adult.toml", "configs/retail.toml"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="processes per checkout and config (alternating)")
    parser.add_argument("--repeats", type=int, default=3, help="timed trials per process")
    args = parser.parse_args()
    checkouts = {"this": ROOT}
    if args.against is not None:
        checkouts["against"] = args.against.resolve()
    started = time.perf_counter()
    result = measure(checkouts, args.configs, args.threads, args.rounds, args.repeats)
    line = {
        "bench": "trial",
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats,
        **result,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.against is not None:
        line["trial_ratio_this_over_against"] = {
            c: round(result["trial_seconds"]["this"][c] / result["trial_seconds"]["against"][c], 4)
            for c in args.configs
        }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
