"""Forward backtest: is the OOF score of a stacked cutoff table honest?

OOF folds of a (entity, cutoff) table train on rows from cutoffs after the scored ones, which a model
never has in production. The backtest replays production for the last `cv.backtest` training cutoffs:
for each cutoff c, the same K folds are trained on the rows whose label windows end by c (the past
only) and their averaged predictions score c's rows, beside the OOF score of those same rows. A gap
between the two is the optimism of the OOF score; the test cutoff's holdout is one more such replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.windows import offset
from pipeline.config import Config
from pipeline.core.errors import ConfigError, DataError
from pipeline.core.metrics import GREATER_IS_BETTER, score
from pipeline.core.progress import QUIET, Progress
from pipeline.data.folds import Folds
from pipeline.data.prepare import Prepared, check_fold_classes
from pipeline.engine.cv import run_cv
from pipeline.engine.scoring import cutoff_dates
from pipeline.engine.spec import TrainSpec


@dataclass(frozen=True)
class BacktestCutoff:
    """One replayed cutoff: its rows scored by OOF and by folds trained only on rows known at the cutoff."""

    cutoff: str
    n_train: int
    n_rows: int
    oof_score: float
    forward_score: float
    best_iterations: tuple[int, ...]
    greater_is_better: bool

    @property
    def gap(self) -> float:
        """How much better the OOF score looks than the forward one (in the metric's units; > 0: optimistic)."""
        diff = self.oof_score - self.forward_score
        return diff if self.greater_is_better else -diff


@dataclass(frozen=True)
class Replay:
    """What one replay trains on and scores, settled (and checked) before any training."""

    day: str
    past: np.ndarray  # rows whose label windows ended by the cutoff: the replay's training rows
    rows: np.ndarray  # the cutoff's own rows: the rows it scores
    folds: Folds  # the experiment's fold ids restricted to the past rows


def backtest(
    cfg: Config,
    prep: Prepared,
    spec: TrainSpec,
    oof_pred: np.ndarray,
    replays: Sequence[Replay],
    progress: Progress = QUIET,
) -> list[BacktestCutoff]:
    """Run the replays `plan_backtest` settled, oldest first."""
    out = []
    for k, plan in enumerate(replays, start=1):
        r = replay(cfg, prep, spec, oof_pred, plan)
        out.append(r)
        progress.step(
            "backtest",
            k,
            len(replays),
            f"cutoff {r.cutoff}: OOF {r.oof_score:.5f}, forward "
            f"{r.forward_score:.5f} (trained on the {r.n_train} rows whose labels were known then)",
        )
    return out


def plan_backtest(cfg: Config, prep: Prepared) -> list[Replay]:
    """The replays of the last `cv.backtest` training cutoffs ([] when off), checked before any training:
    every restricted fold must have rows to train and stop on, and the classes its metric needs."""
    if not cfg.cv.backtest:
        return []
    cutoffs = cutoff_dates(cfg, prep)
    known_at = label_end(cutoffs, cfg)
    plans = []
    for cutoff in backtest_cutoffs(cfg, cutoffs, known_at):
        day, past, rows = str(pd.Timestamp(cutoff).date()), known_at <= cutoff, cutoffs == cutoff
        folds = past_folds(prep.folds, past, day)
        try:
            check_fold_classes(cfg, folds, prep.y[past], prep.labels)
        except DataError as exc:
            raise ConfigError(
                f"cv.backtest, replay of cutoff {day} (past rows only): {exc}; or lower cv.backtest"
            ) from None
        scored = np.unique(prep.y[rows])
        if cfg.metric == "auc" and len(scored) < 2:
            raise ConfigError(
                f"cv.backtest: the {int(rows.sum())} rows of cutoff {day} all have "
                f"{cfg.data.target!r} = {prep.labels.classes[int(scored[0])]!r}, so AUC is "
                "undefined there; lower cv.backtest so replays start at later cutoffs"
            )
        plans.append(Replay(day, past, rows, folds))
    return plans


def backtest_cutoffs(cfg: Config, cutoffs: np.ndarray, known_at: np.ndarray) -> list[np.datetime64]:
    """The last N training cutoffs that have rows of earlier cutoffs whose label windows ended by them."""
    distinct = np.unique(cutoffs)
    n = cfg.cv.backtest
    first_known = known_at.min()
    usable = [c for c in distinct if first_known <= c]
    if n > len(usable):
        raise ConfigError(
            f"cv.backtest = {n}, but only {len(usable)} of the {len(distinct)} training cutoffs have "
            f"earlier cutoffs to train on ({cfg.features.label.window.words} label windows); "
            f"set cv.backtest to at most {len(usable)}, or 0 to turn it off"
        )
    return usable[-n:]


def label_end(cutoffs: np.ndarray, cfg: Config) -> np.ndarray:
    """Where each cutoff's label window ends: a row trains a replay of c only when its label is known at c."""
    return (pd.DatetimeIndex(cutoffs) + offset(cfg.features.label.window)).to_numpy(dtype="datetime64[ns]")


def replay(cfg: Config, prep: Prepared, spec: TrainSpec, oof_pred: np.ndarray, plan: Replay) -> BacktestCutoff:
    """Train the K folds on the rows known at the cutoff and score its rows with their averaged predictions."""
    result = run_cv(prep.X[plan.past], prep.y[plan.past], plan.folds, spec, prep.X[plan.rows])
    validated = prep.folds.validated() & plan.rows
    return BacktestCutoff(
        cutoff=plan.day,
        n_train=int(plan.past.sum()),
        n_rows=int(plan.rows.sum()),
        oof_score=score(cfg.metric, prep.y[validated], oof_pred[validated]),
        forward_score=score(cfg.metric, prep.y[plan.rows], result.test_pred),
        best_iterations=tuple(result.best_iterations),
        greater_is_better=GREATER_IS_BETTER[cfg.metric],
    )


def past_folds(folds: Folds, past: np.ndarray, day: str) -> Folds:
    """The experiment's fold ids restricted to the past rows, so the replay uses the same folds."""
    restricted = folds.restrict(past)
    for repeat, fold in folds.pairs():
        train_idx, valid_idx = restricted.split(repeat, fold)
        if len(train_idx) == 0 or len(valid_idx) == 0:
            which = f"fold {fold}" + (f" of repeat {repeat}" if folds.n_repeats > 1 else "")
            raise ConfigError(
                f"cv.backtest: at cutoff {day}, {which} has no rows of earlier cutoffs to "
                f"{'train on' if len(train_idx) == 0 else 'stop early on'}; "
                "lower cv.backtest so replays start at later cutoffs"
            )
    return restricted


def backtest_document(results: Sequence[BacktestCutoff]) -> dict[str, Any]:
    """scores.json's `backtest`: each replayed cutoff, and the means (gap: the OOF's optimism)."""
    cutoffs = [{**asdict(r), "best_iterations": list(r.best_iterations), "gap": r.gap} for r in results]
    return {
        "gap_is": "how much better OOF looks than forward (> 0: the OOF score is optimistic)",
        "cutoffs": cutoffs,
        "mean_oof_score": float(np.mean([r.oof_score for r in results])),
        "mean_forward_score": float(np.mean([r.forward_score for r in results])),
        "mean_gap": float(np.mean([r.gap for r in results])),
    }
