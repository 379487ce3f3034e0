"""CV engine: gbpipe's K-fold OOF engine against the textbook loop and bare `lgb.train`.

Two tables: adult (configs/adult.toml: 32,561 x 14, learning rate 0.05, its 16,281 test rows predicted
too) and a generated 200,000 x 50 binary table (make_classification: 5 informative, 10 redundant
columns, 30 % flipped labels, seed 0; learning rate 0.1 so folds stop after a few hundred rounds; no
test rows). For every contender: the same 5 stratified folds, the same LightGBM parameters (31 leaves,
deterministic, col-wise), early stopping after 100 rounds without gain on the validation fold, and
2 threads in total:

- gbpipe: `pipeline.cv.run_cv(X, y, folds, spec, X_test)` on the prepared matrix, as the train stage
  calls it: bins once, trains the folds (with the config's default `model.fold_workers`: auto, two
  folds side by side at one thread each), predicts OOF and test rows, scores, importance.
- gbpipe_seq: the same with fold_workers = 1 (folds one after another, 2 threads each).
- textbook: per fold `lgb.Dataset(X[train_idx])` and a validation Dataset referencing it, `lgb.train`
  with early stopping, predicting the validation (and test) rows: everything inside the clock.
- bare: per fold `lgb.train(params, train_set, num_boost_round=R_k, valid_sets=[valid_set])` with no
  callbacks and no predictions, where train_set / valid_set are the very Datasets gbpipe's fold k
  trains on (subsets of the once-binned matrix), constructed *before* the clock starts, and R_k is
  the number of rounds gbpipe's fold k ran (best iteration + the 100 patience rounds). This is the cost
  of boosting those rounds and evaluating the metric every round, and nothing else: the floor.
- train_stage (information): the whole `gbpipe train --config ...` command in a fresh process
  (interpreter start, reading the data, preparing, the engine, writing the run folder).

Each repeat times all contenders back to back (the order rotates between repeats); the figures are
medians over repeats. vs_bare_ratio = gbpipe / bare (target <= 1.05), speedup_vs_textbook =
textbook / gbpipe (target >= 1.25); the top-level figures are the worse of the two tables. OOF AUCs
must agree within 0.001. The last line is one JSON object.

Run it under the bench lock:  flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_cv.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config
from pipeline.data.folds import Folds
from pipeline.data.prepare import prepare
from pipeline.engine.cv import fold_workers, run_cv
from pipeline.engine.fold import build_dataset, predict
from pipeline.engine.spec import (
    TrainSpec,
    train_spec,
)

THREADS = 2


def time_gbpipe(X, y, folds: Folds, spec: TrainSpec, X_test) -> tuple[float, dict]:
    start = time.perf_counter()
    result = run_cv(X, y, folds, spec, X_test)
    seconds = time.perf_counter() - start
    # early stopping ran best + patience rounds (or hit the cap); the returned model keeps the best ones
    rounds = [min(b + (spec.early_stopping_rounds or 0), spec.num_boost_round) for b in result.best_iterations]
    return seconds, {"oof_auc": result.oof_score, "rounds": rounds, "best_iterations": result.best_iterations}


def time_textbook(X, y, folds: Folds, spec: TrainSpec, X_test) -> tuple[float, dict]:
    start = time.perf_counter()
    oof = np.zeros(len(y))
    for repeat, fold in folds.pairs():
        train_idx, valid_idx = folds.split(repeat, fold)
        dtrain = lgb.Dataset(
            X[train_idx], y[train_idx], params=spec.params, categorical_feature=list(spec.categorical) or "auto"
        )
        dvalid = lgb.Dataset(X[valid_idx], y[valid_idx], reference=dtrain)
        booster = lgb.train(
            spec.params,
            dtrain,
            num_boost_round=spec.num_boost_round,
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(spec.early_stopping_rounds, verbose=False)],
        )
        oof[valid_idx] = booster.predict(X[valid_idx], num_iteration=booster.best_iteration)
        if X_test is not None:
            booster.predict(X_test, num_iteration=booster.best_iteration)
    seconds = time.perf_counter() - start
    return seconds, {"oof_auc": float(roc_auc_score(y, oof))}


def time_bare(X, y, folds: Folds, spec: TrainSpec, rounds: list[int], best: list[int]) -> tuple[float, dict]:
    full = build_dataset(X, y, spec)
    fold_sets = []
    for repeat, fold in folds.pairs():  # built outside the clock
        train_idx, valid_idx = folds.split(repeat, fold)
        fold_sets.append((full.subset(train_idx).construct(), full.subset(valid_idx).construct(), valid_idx))
    boosters, seconds = [], 0.0
    for (train_set, valid_set, _), n_rounds in zip(fold_sets, rounds):
        start = time.perf_counter()
        boosters.append(lgb.train(spec.params, train_set, num_boost_round=n_rounds, valid_sets=[valid_set]))
        seconds += time.perf_counter() - start
    oof = np.zeros(len(y))
    for booster, (_, _, valid_idx), n_best in zip(boosters, fold_sets, best):
        oof[valid_idx] = predict(booster, X[valid_idx], "binary", n_best)
    return seconds, {"oof_auc": float(roc_auc_score(y, oof))}


def time_train_stage(config: Path, runs_dir: str) -> float:
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        "--config",
        str(config),
        "-q",
        "--set",
        f"model.num_threads={THREADS}",
        "--set",
        f"experiment.runs_dir={runs_dir}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def adult_case(tmp: Path) -> dict:
    config = ROOT / "configs" / "adult.toml"
    cfg = load_config(config, [f"model.num_threads={THREADS}", f"experiment.runs_dir={tmp / 'prep'}"])
    prep = prepare(cfg)
    return {
        "name": "adult",
        "X": prep.X,
        "y": prep.y,
        "folds": prep.folds,
        "X_test": prep.X_test,
        "spec": train_spec(cfg, prep),
        "config": config,
    }


def generated_case(tmp: Path, rows: int, cols: int) -> dict:
    informative = min(5, cols // 2)
    X, y = make_classification(
        n_samples=rows,
        n_features=cols,
        n_informative=informative,
        n_redundant=min(10, cols - informative - 1),
        flip_y=0.3,
        class_sep=0.5,
        random_state=0,
    )
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(cols)]).assign(y=y)
    frame.to_parquet(tmp / "generated.parquet")
    config = tmp / "generated.toml"
    config.write_text(
        f'[experiment]\nname = "generated"\n\n[data]\ntrain = "{tmp / "generated.parquet"}"\n'
        'target = "y"\ntask = "binary"\n\n[cv]\nn_splits = 5\nseed = 42\n\n[model]\nmetric = "auc"\n'
        "num_boost_round = 10000\nearly_stopping_rounds = 100\n"
        "params = { learning_rate = 0.1, num_leaves = 31 }\n"
    )
    cfg = load_config(config, [f"model.num_threads={THREADS}", f"experiment.runs_dir={tmp / 'prep'}"])
    prep = prepare(cfg)
    return {
        "name": f"generated_{rows // 1000}k_x{cols}",
        "X": prep.X,
        "y": prep.y,
        "folds": prep.folds,
        "X_test": None,
        "spec": train_spec(cfg, prep),
        "config": config,
    }


def measure(case: dict, repeats: int, tmp: Path) -> dict:
    X, y, folds, X_test, spec = case["X"], case["y"], case["folds"], case["X_test"], case["spec"]
    seq_spec = replace(spec, fold_workers=1)
    _, reference = time_gbpipe(X, y, folds, seq_spec, X_test)  # untimed: the rounds bare must run
    contenders = {
        "bare": lambda: time_bare(X, y, folds, spec, reference["rounds"], reference["best_iterations"]),
        "gbpipe": lambda: time_gbpipe(X, y, folds, spec, X_test),
        "gbpipe_seq": lambda: time_gbpipe(X, y, folds, seq_spec, X_test),
        "textbook": lambda: time_textbook(X, y, folds, spec, X_test),
        "train_stage": lambda: (time_train_stage(case["config"], str(tmp / "runs")), {}),
    }
    times = {name: [] for name in contenders}
    scores = {}
    for r in range(repeats):
        names = list(contenders)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds, info = contenders[name]()
            times[name].append(seconds)
            scores.setdefault(name, info.get("oof_auc"))
        print(
            f"  {case['name']} repeat {r + 1}/{repeats}: "
            + "  ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items())
            + f"  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    median = {name: statistics.median(t) for name, t in times.items()}
    aucs = {k: v for k, v in scores.items() if v is not None}
    return {
        "rows": int(X.shape[0]),
        "features": int(X.shape[1]),
        "rounds": reference["rounds"],
        "fold_workers": fold_workers(spec, len(folds.pairs())),
        "seconds": median,
        "seconds_all": times,
        "vs_bare_ratio": median["gbpipe"] / median["bare"],
        "speedup_vs_textbook": median["textbook"] / median["gbpipe"],
        "seq_vs_bare_ratio": median["gbpipe_seq"] / median["bare"],
        "train_stage_vs_bare_ratio": median["train_stage"] / median["bare"],
        "oof_auc": aucs,
        "oof_auc_max_diff": max(aucs.values()) - min(aucs.values()),
    }


def sweep(sizes: list[tuple[int, int]], repeats: int, tmp: Path) -> None:
    """Where parallel folds pay: gbpipe with 2 folds side by side x 1 thread against one fold after
    another x 2 threads, on generated tables."""
    rows_out = {}
    for rows, cols in sizes:
        case = generated_case(tmp, rows, cols)
        X, y, folds, spec = case["X"], case["y"], case["folds"], case["spec"]
        times = {"parallel": [], "sequential": []}
        for _ in range(repeats):
            times["parallel"].append(time_gbpipe(X, y, folds, replace(spec, fold_workers=2), None)[0])
            times["sequential"].append(time_gbpipe(X, y, folds, replace(spec, fold_workers=1), None)[0])
        median = {k: statistics.median(v) for k, v in times.items()}
        rows_out[f"{rows}x{cols}"] = {
            "cells": rows * cols,
            **median,
            "parallel_vs_sequential": median["parallel"] / median["sequential"],
        }
        print(
            f"{rows:>8} x {cols:<3} {rows * cols:>10} cells  parallel {median['parallel']:.2f}s  sequential "
            f"{median['sequential']:.2f}s  ratio {median['parallel'] / median['sequential']:.3f}",
            flush=True,
        )
    print(
        json.dumps(
            {
                "bench": "cv_sweep",
                "threads": THREADS,
                "repeats": repeats,
                "sizes": rows_out,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--tables", default="adult,generated", help="which tables (comma-separated)")
    parser.add_argument(
        "--sweep",
        default=None,
        metavar="ROWSxCOLS,...",
        help="instead: parallel vs sequential folds on generated tables, e.g. 2000x10,20000x20",
    )
    args = parser.parse_args()
    if args.sweep:
        with tempfile.TemporaryDirectory(prefix="gbpipe-bench-cv-") as tmp_name:
            sizes = [tuple(int(v) for v in item.split("x")) for item in args.sweep.split(",")]
            sweep(sizes, args.repeats, Path(tmp_name))
        return
    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory(prefix="gbpipe-bench-cv-") as tmp_name:
        tmp = Path(tmp_name)
        makers = {"adult": lambda: adult_case(tmp), "generated": lambda: generated_case(tmp, args.rows, args.cols)}
        for case in (makers[name]() for name in args.tables.split(",")):
            print(
                f"{case['name']}: {case['X'].shape[0]} x {case['X'].shape[1]}, {args.repeats} repeats, "
                f"{THREADS} threads",
                flush=True,
            )
            results[case["name"]] = measure(case, args.repeats, tmp)
    print(
        f"\n{'table':<22}{'bare':>8}{'gbpipe':>8}{'seq':>8}{'textbook':>9}{'stage':>8}   gbpipe/bare  "
        "textbook/gbpipe  seq/bare  OOF AUC (gbpipe, textbook)"
    )
    for name, r in results.items():
        s = r["seconds"]
        print(
            f"{name:<22}{s['bare']:>8.2f}{s['gbpipe']:>8.2f}{s['gbpipe_seq']:>8.2f}{s['textbook']:>9.2f}"
            f"{s['train_stage']:>8.2f}   {r['vs_bare_ratio']:>11.3f}  {r['speedup_vs_textbook']:>15.3f}"
            f"  {r['seq_vs_bare_ratio']:>8.3f}  {r['oof_auc']['gbpipe']:.5f}, {r['oof_auc']['textbook']:.5f}"
        )
    vs_bare = max(r["vs_bare_ratio"] for r in results.values())
    speedup = min(r["speedup_vs_textbook"] for r in results.values())
    auc_diff = max(r["oof_auc_max_diff"] for r in results.values())
    print(
        json.dumps(
            {
                "bench": "cv",
                "threads": THREADS,
                "repeats": args.repeats,
                "vs_bare_ratio": round(vs_bare, 4),
                "speedup_vs_textbook": round(speedup, 4),
                "oof_auc_max_diff": round(auc_diff, 6),
                "targets_met": vs_bare <= 1.05 and speedup >= 1.25 and auc_diff <= 0.001,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                "lightgbm": lgb.__version__,
                "tables": results,
            }
        )
    )


if __name__ == "__main__":
    main()
