"""Study (not a timing): would December's own labels raise the retail December AUC?

No training row of the retail task has a December label (the data starts on 2010-12-01), and December's
labels cover 9 days. This study cross-fits December: the 4,331 December rows are split into 5 stratified
folds; each fold is predicted by a model trained on
- ``train``: the training cutoffs only (the shipped question),
- ``december``: the other 4 folds of December only (December's own 9-day question),
- ``train_plus_december``: both, with an is-December column so the two label questions stay apart,
- ``train_plus_december_unflagged``: both, without that column.
Rounds: all but ``december`` run as many as the engine's own 5-fold CV on the training rows
kept (their mean best iteration); ``december`` picks its rounds by an inner 4-fold CV on the folds it learns
from. No model sees the fold it predicts. The last line is one JSON object with the median December AUC of each
over the seeds, beside the shipped run's holdout AUC.

    flock /tmp/gbpipe-bench.lock .venv/bin/python bench/study_december.py --seeds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config
from pipeline.data.prepare import experiment_tables, prepare
from pipeline.engine.cv import run_cv
from pipeline.engine.spec import train_spec

MODES = ("train", "december", "train_plus_december", "train_plus_december_unflagged")


def load(config: Path) -> tuple[tuple, int, float]:
    """The retail matrices (a last column flags December's rows) and params, the engine's mean best iteration
    and its December holdout AUC."""
    cfg = load_config(config)
    prep = prepare(cfg, tables=experiment_tables(cfg))
    shipped = run_cv(prep.X, prep.y, prep.folds, train_spec(cfg, prep), prep.X_test)
    params = {**cfg.model.params, "objective": "binary", "metric": "auc", "verbose": -1, "num_threads": 2}
    X = np.c_[np.asarray(prep.X, dtype=np.float64), np.zeros(len(prep.X))]
    Xd = np.c_[np.asarray(prep.X_test, dtype=np.float64), np.ones(len(prep.X_test))]
    data = (params, X, np.asarray(prep.y), Xd, np.asarray(prep.y_test))
    rounds = round(statistics.mean(shipped.best_iterations))
    return data, rounds, float(roc_auc_score(prep.y_test, shipped.test_pred))


def training_set(mode: str, X: np.ndarray, y: np.ndarray, Xd: np.ndarray, yd: np.ndarray):
    """Rows and labels each mode learns from. A flag column constant over the rows learnt from is never split
    on, so predicting December's rows with it set changes nothing for the other modes."""
    if mode == "train":
        return X, y
    if mode == "december":
        return Xd, yd
    if mode == "train_plus_december_unflagged":
        Xd = np.c_[Xd[:, :-1], np.zeros(len(Xd))]
    return np.r_[X, Xd], np.r_[y, yd]


def december_rounds(params: dict, Xa: np.ndarray, ya: np.ndarray, seed: int) -> int:
    """Rounds for a December-only model: inner 4-fold CV with early stopping on the rows it learns from."""
    cv = lgb.cv(
        {**params, "seed": seed},
        lgb.Dataset(Xa, ya),
        3000,
        nfold=4,
        stratified=True,
        seed=seed,
        callbacks=[lgb.early_stopping(100, verbose=False)],
    )
    return len(cv["valid auc-mean"])


def cross_fit(mode: str, data: tuple, seed: int, rounds: int) -> float:
    """December AUC of one mode, each December fold predicted by a model that never saw it."""
    params, X, y, Xd, yd = data
    pred = np.zeros(len(yd))
    for fit_rows, val_rows in StratifiedKFold(5, shuffle=True, random_state=seed).split(Xd, yd):
        Xa, ya = training_set(mode, X, y, Xd[fit_rows], yd[fit_rows])
        n = december_rounds(params, Xa, ya, seed) if mode == "december" else rounds
        model = lgb.train({**params, "seed": seed}, lgb.Dataset(Xa, ya), n)
        pred[val_rows] = model.predict(Xd[val_rows])
    return float(roc_auc_score(yd, pred))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "retail.toml")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    data, rounds, shipped_auc = load(args.config)
    print(
        f"training rows {len(data[2])} (positives {int(data[2].sum())}), December rows {len(data[4])} "
        f"(positives {int(data[4].sum())}); {rounds} rounds; shipped holdout AUC {shipped_auc:.4f}",
        flush=True,
    )
    aucs: dict[str, list[float]] = {mode: [] for mode in MODES}
    for seed in range(args.seeds):
        for mode in MODES:
            aucs[mode].append(cross_fit(mode, data, seed, rounds))
            print(json.dumps({"seed": seed, "mode": mode, "december_auc": round(aucs[mode][-1], 4)}), flush=True)
    print(
        json.dumps(
            {
                "study": "december",
                "seeds": args.seeds,
                "rounds": rounds,
                "seconds": round(time.perf_counter() - started, 1),
                "shipped_holdout_auc": round(shipped_auc, 4),
                "december_auc": {m: round(statistics.median(v), 4) for m, v in aucs.items()},
                "december_auc_runs": {m: [round(a, 4) for a in v] for m, v in aucs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
