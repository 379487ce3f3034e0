"""Time for `gbpipe tune` to reach the best OOF score of the textbook Optuna loop, on adult.

The textbook loop (the course's seed 002): a fresh lgb.Dataset for every fold of every trial, no
pruning, 10 trials of Optuna's default TPE, 5-fold OOF AUC with early stopping, learning rate fixed,
the same search space. Both loops run in this one process, side by side on the same rows, folds,
categorical columns, threads and learning rate; each repeat uses another seed (same seed for both).

Per repeat: the textbook's total time T and best OOF score S; then gbpipe tune with T as its time
budget (--timeout T), and the time t from its start (data loading included) until a finished trial
reaches S. The ratio is t / T (target <= 0.33); a repeat where gbpipe never reaches S within T gives
no ratio and says so; the headline is the median over repeats (a miss counts as infinitely slow).
Also reported: which gbpipe trial reached S (trial 0 is the untuned default parameters, queued first
by design) and the time gbpipe's first 10 trials took / T. The last line is one JSON object.

Run it under the bench lock:  flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_tune.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

import lightgbm as lgb
import numpy as np
import optuna
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config
from pipeline.data.prepare import prepare
from pipeline.engine.spec import available_cores
from pipeline.tune.options import tune_options
from pipeline.tune.run import tune


def textbook_objective(trial: optuna.Trial, X, y, folds, categorical, rounds, stop_rounds, rate, threads) -> float:
    """The seed's loop: new Datasets per fold, 5-fold OOF AUC with early stopping, fixed learning rate."""
    params = {
        "objective": "binary",
        "metric": "auc",
        "verbose": -1,
        "learning_rate": rate,
        "num_threads": threads,
        "num_leaves": trial.suggest_int("num_leaves", 2, 256),
        "max_bin": trial.suggest_int("max_bin", 128, 256),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 40),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.4, 1.0),
        "bagging_freq": trial.suggest_int("bagging_freq", 1, 7),
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-8, 10.0, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-8, 10.0, log=True),
    }
    oof = np.zeros(len(y))
    for k in range(folds.n_splits):
        train_idx, valid_idx = folds.split(0, k)
        dtrain = lgb.Dataset(X[train_idx], y[train_idx], categorical_feature=categorical, params=params)
        dvalid = lgb.Dataset(X[valid_idx], y[valid_idx], reference=dtrain)
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=rounds,
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(stop_rounds, verbose=False)],
        )
        oof[valid_idx] = booster.predict(X[valid_idx], num_iteration=booster.best_iteration)
    return float(roc_auc_score(y, oof))


def run_textbook(cfg, prep, n_trials: int, seed: int, threads: int) -> dict:
    rate = cfg.model.params["learning_rate"]
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    study.optimize(
        lambda t: textbook_objective(
            t,
            prep.X,
            prep.y,
            prep.folds,
            list(prep.schema.categorical_indices),
            cfg.model.num_boost_round,
            cfg.model.early_stopping_rounds,
            rate,
            threads,
        ),
        n_trials=n_trials,
    )
    return {
        "seconds": time.perf_counter() - started,
        "best": study.best_value,
        "values": [t.value for t in study.trials],
    }


def run_gbpipe(
    config: Path, overrides: list[str], n_trials: int, seed: int, threads: int, target: float, timeout: float
) -> dict:
    """gbpipe tune with the textbook's total time as its budget (and 5x its trial count as a cap)."""
    cfg = load_config(
        config,
        [
            *overrides,
            f"model.num_threads={threads}",
            f"tune.seed={seed}",
            "tune.plots=false",
            f"tune.study_name='bench{seed}'",
        ],
    )
    started = time.time()
    study_dir = tune(cfg, tune_options(cfg, n_trials=5 * n_trials, timeout=timeout, new_study=True))
    import pandas as pd

    trials = pd.read_parquet(study_dir / "trials.parquet").sort_values("datetime_complete")
    seconds_done = [(ts.to_pydatetime().astimezone(UTC).timestamp() - started) for ts in trials["datetime_complete"]]
    values = trials["value"].to_numpy(float)
    reached = next(
        ((s, int(n)) for s, v, n in zip(seconds_done, values, trials["number"]) if v >= target - 1e-12), (None, None)
    )
    return {
        "seconds": max(seconds_done),
        "best": float(np.nanmax(values)),
        "reached_seconds": reached[0],
        "reached_at_trial": reached[1],
        "pruned": int((trials["state"] == "PRUNED").sum()),
        "trials": len(trials),
        "seconds_first_n": seconds_done[min(n_trials, len(seconds_done)) - 1],
        "values": [None if np.isnan(v) else float(v) for v in values],
        "first_trial_value": float(values[0]) if not np.isnan(values[0]) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "adult.toml")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="LightGBM threads of both loops (default 1: on a shared machine, several threads per "
        "process make timings erratic; at most the core count)",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=0.1,
        help="the fixed learning rate of both loops (default 0.1; the adult config trains at 0.05)",
    )
    args = parser.parse_args()
    if not 1 <= args.threads <= available_cores():
        parser.error(f"--threads must be between 1 and the {available_cores()} cores available")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    repeats = []
    with tempfile.TemporaryDirectory(prefix="bench_tune_") as tmp:
        overrides = [f"experiment.runs_dir={json.dumps(tmp)}", f"model.params.learning_rate={args.learning_rate}"]
        cfg = load_config(args.config, overrides)
        prep = prepare(cfg)
        for r in range(args.repeats):
            textbook = run_textbook(cfg, prep, args.trials, seed=r, threads=args.threads)
            gbpipe = run_gbpipe(
                args.config,
                overrides,
                args.trials,
                seed=r,
                threads=args.threads,
                target=textbook["best"],
                timeout=textbook["seconds"],
            )
            ratio = None if gbpipe["reached_seconds"] is None else gbpipe["reached_seconds"] / textbook["seconds"]
            repeats.append({"seed": r, "textbook": textbook, "gbpipe": gbpipe, "ratio": ratio})
            print(
                f"repeat {r}: textbook best {textbook['best']:.5f} in {textbook['seconds']:.1f}s; gbpipe best "
                f"{gbpipe['best']:.5f} after {gbpipe['trials']} trials ({gbpipe['pruned']} pruned) in "
                f"{gbpipe['seconds']:.1f}s, its first {args.trials} in {gbpipe['seconds_first_n']:.1f}s; reached "
                "the textbook best "
                + (
                    f"at trial {gbpipe['reached_at_trial']} after {gbpipe['reached_seconds']:.1f}s: ratio {ratio:.3f}"
                    if ratio is not None
                    else "never within the textbook's time"
                ),
                flush=True,
            )
    ratios = [r["ratio"] if r["ratio"] is not None else float("inf") for r in repeats]
    median = statistics.median(ratios)
    print(
        json.dumps(
            {
                "bench": "tune",
                "dataset": "adult",
                "trials": args.trials,
                "repeats": args.repeats,
                "threads": args.threads,
                "learning_rate": args.learning_rate,
                "time_to_textbook_best_ratio": None if median == float("inf") else round(median, 4),
                "ratios": [None if r == float("inf") else round(r, 4) for r in ratios],
                "reached": sum(r["ratio"] is not None for r in repeats),
                "target": 0.33,
                "textbook_seconds": [round(r["textbook"]["seconds"], 2) for r in repeats],
                "textbook_best": [r["textbook"]["best"] for r in repeats],
                "gbpipe_seconds_to_reach": [
                    None if r["gbpipe"]["reached_seconds"] is None else round(r["gbpipe"]["reached_seconds"], 2)
                    for r in repeats
                ],
                "gbpipe_seconds_total": [round(r["gbpipe"]["seconds"], 2) for r in repeats],
                "gbpipe_same_trials_time_ratio": round(
                    statistics.median(r["gbpipe"]["seconds_first_n"] / r["textbook"]["seconds"] for r in repeats), 4
                ),
                "gbpipe_trials": [r["gbpipe"]["trials"] for r in repeats],
                "reached_at_trial": [r["gbpipe"]["reached_at_trial"] for r in repeats],
                "gbpipe_best": [r["gbpipe"]["best"] for r in repeats],
                "gbpipe_first_trial": [r["gbpipe"]["first_trial_value"] for r in repeats],
                "gbpipe_pruned": [r["gbpipe"]["pruned"] for r in repeats],
            }
        )
    )


if __name__ == "__main__":
    main()
