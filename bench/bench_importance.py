"""Permutation importance: gbpipe's engine against sklearn.inspection.permutation_importance.

One K-fold run on adult (configs/adult.toml, all 32,561 training rows); then, per fold model and its
validation rows, both compute the drop in AUC for every feature with the same seed and repeats, one
after the other (interleaved, the whole comparison repeated --runs times; the median of the ratio
of total times is reported). Both use the same thread budget: LightGBM prediction threads = --threads,
scikit-learn n_jobs=1 (its booster predicts with --threads threads too).

Run under `flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_importance.py`.
The last line is one JSON object: speedup_vs_sklearn (target >= 2) and how well the values agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn.inspection import permutation_importance

from pipeline.config import load_config
from pipeline.core.metrics import score
from pipeline.data.prepare import prepare
from pipeline.engine.cv import run_cv
from pipeline.engine.spec import train_spec
from pipeline.importance.permutation import permutation_drops, predict_rows
from pipeline.importance.run import fold_seed


class BoosterEstimator:
    """The smallest estimator scikit-learn accepts: fit and predict (P(positive) here)."""

    def __init__(self, booster: lgb.Booster, threads: int):
        self.booster, self.threads = booster, threads

    def fit(self, X, y):
        return self

    def predict(self, X):
        return predict_rows(self.booster, X, "binary", self.threads)


def auc_scorer(estimator, X, y) -> float:
    return score("auc", y, estimator.predict(X))


def fold_models(threads: int):
    """Train adult's fold models once; return them (cut at their best iteration) with validation rows."""
    with tempfile.TemporaryDirectory() as runs:
        cfg = load_config(
            ROOT / "configs" / "adult.toml", [f"experiment.runs_dir={json.dumps(runs)}", f"model.num_threads={threads}"]
        )
        prep = prepare(cfg)
        result = run_cv(prep.X, prep.y, prep.folds, train_spec(cfg, prep))
    models = []
    for (repeat, fold), booster, fold_result in zip(prep.folds.pairs(), result.models, result.folds):
        _, valid = prep.folds.split(repeat, fold)
        trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=fold_result.best_iteration))
        models.append((repeat, fold, trimmed, prep.X[valid], prep.y[valid]))
    return models, list(prep.schema.columns)


def compare_once(models, n_repeats: int, seed: int, threads: int):
    """Both engines on every fold; returns total seconds of each and the per-fold values."""
    ours_s = theirs_s = 0.0
    ours_values, theirs_values, predicted, total = [], [], 0, 0
    for repeat, fold, booster, Xv, yv in models:
        groups = [[j] for j in range(Xv.shape[1])]
        fold_rs = fold_seed(seed, repeat, fold)
        start = time.perf_counter()
        ours = permutation_drops(booster, Xv, yv, "binary", "auc", groups, n_repeats, fold_rs, threads)
        middle = time.perf_counter()
        theirs = permutation_importance(
            BoosterEstimator(booster, threads),
            Xv,
            yv,
            scoring=auc_scorer,
            n_repeats=n_repeats,
            random_state=fold_rs,
            n_jobs=1,
        )
        ours_s += middle - start
        theirs_s += time.perf_counter() - middle
        ours_values.append(ours.drops)
        theirs_values.append(theirs.importances)
        predicted, total = predicted + ours.rows_predicted, total + ours.rows_total
    return ours_s, theirs_s, np.stack(ours_values), np.stack(theirs_values), predicted / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repeat the whole comparison (median reported)")
    parser.add_argument("--n-repeats", type=int, default=5, help="shuffles per feature (both engines)")
    parser.add_argument("--threads", type=int, default=1, help="prediction threads of both engines")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    models, columns = fold_models(args.threads)
    print(
        f"adult: {len(models)} fold models, {len(columns)} features, {len(models[0][3])} validation rows "
        f"per fold, {args.n_repeats} repeats, {args.threads} thread(s)",
        flush=True,
    )
    ratios, ours_times, theirs_times = [], [], []
    for run in range(args.runs):
        ours_s, theirs_s, ours, theirs, share = compare_once(models, args.n_repeats, args.seed, args.threads)
        ratios.append(theirs_s / ours_s)
        ours_times.append(ours_s)
        theirs_times.append(theirs_s)
        print(
            f"run {run + 1}/{args.runs}: gbpipe {ours_s:.2f}s  sklearn {theirs_s:.2f}s  "
            f"ratio {theirs_s / ours_s:.2f}  rows predicted {share:.0%}",
            flush=True,
        )
    # Agreement: per value (same permutations, so only float rounding of the AUC may differ), and
    # for the mean over folds x repeats relative to its spread (the "within noise" criterion).
    max_abs_diff = float(np.abs(ours - theirs).max())
    mean_ours = ours.mean(axis=(0, 2))
    mean_theirs = theirs.mean(axis=(0, 2))
    spread = np.maximum(theirs.std(axis=(0, 2), ddof=1), 1e-12)
    ratio = statistics.median(ratios)
    print(f"speedup vs sklearn (median of {args.runs}): {ratio:.2f}x; max |difference| of values {max_abs_diff:.2e}")
    print(
        json.dumps(
            {
                "speedup_vs_sklearn": round(ratio, 3),
                "target": 2.0,
                "meets_target": ratio >= 2.0,
                "gbpipe_seconds_median": round(statistics.median(ours_times), 3),
                "sklearn_seconds_median": round(statistics.median(theirs_times), 3),
                "runs": args.runs,
                "ratios": [round(r, 3) for r in ratios],
                "max_abs_diff": max_abs_diff,
                "max_mean_diff_over_std": float(np.max(np.abs(mean_ours - mean_theirs) / spread)),
                "rows_predicted_share": round(share, 4),
                "folds": len(models),
                "features": len(columns),
                "valid_rows_per_fold": len(models[0][3]),
                "n_repeats": args.n_repeats,
                "threads": args.threads,
                "dataset": "adult (32,561 training rows)",
            }
        )
    )


if __name__ == "__main__":
    main()
