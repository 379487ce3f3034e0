"""Fast permutation importance of one fitted LightGBM model on its validation rows.

Same numbers as `sklearn.inspection.permutation_importance` (the same permutations for the same
seed, the same drop = baseline - permuted score, bit for bit), with much less prediction work:

- The row permutations are drawn once per model: scikit-learn draws the same sequence for every
  column from one seed, so they are shared by all features.
- A permuted row whose new value keeps every one of its paths through the trees (see
  pipeline.treepaths) keeps its baseline prediction exactly; it is not predicted again.
- A row that gets a value from the same global bin in two repeats has the same prediction in
  both; it is predicted once.
- What is left is stacked into a few large `predict` calls that LightGBM runs on `n_jobs` threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

from pipeline.core.metrics import GREATER_IS_BETTER, rank_auc, score, softmax_from_raw

from .treepaths import ModelPaths, RowRegion, read_model, row_region

ROWS_PER_BATCH = 200_000  # bounds one stacked predict call (rows x features x 8 bytes)
MAX_LEAF_BYTES = 512 * 2**20  # pred_leaf of the validation rows above this: global bins only

GroupCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class FoldPermutation:
    """Permutation importance of one model: drop in score per feature group and repeat."""

    baseline_score: float
    drops: np.ndarray  # (n_groups, n_repeats); positive = the model got worse without the group
    rows_predicted: int  # permuted rows predicted again; the rest kept their baseline prediction
    rows_total: int


@dataclass(frozen=True)
class GroupPlan:
    """Which permuted rows of one group need a new prediction, deduplicated over repeats."""

    rows: np.ndarray  # row of each distinct permuted row to predict
    sources: np.ndarray  # row whose group values it takes
    repeat: np.ndarray  # for each changed (repeat, row): its repeat ...
    row: np.ndarray  # ... its row ...
    pick: np.ndarray  # ... and which distinct permuted row holds its prediction


def permutation_indices(seed: int, n_rows: int, n_repeats: int) -> np.ndarray:
    """Source row of each row's permuted value, per repeat, exactly as scikit-learn draws them.

    scikit-learn turns `random_state` into one int seed, gives every column a fresh
    RandomState(that seed), and reshuffles the already shuffled column in each repeat.
    """
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    rng = np.random.RandomState(column_seed)
    shuffling = np.arange(n_rows)
    current = np.arange(n_rows)
    orders = np.empty((n_repeats, n_rows), dtype="int64")
    for r in range(n_repeats):
        rng.shuffle(shuffling)
        current = current[shuffling]
        orders[r] = current
    return orders


def predict_rows(booster: lgb.Booster, X: np.ndarray, task: str, n_jobs: int) -> np.ndarray:
    """Predictions as pipeline.cv.predict makes them, with an explicit thread count."""
    if task == "multiclass":
        raw = booster.predict(X, raw_score=True, num_threads=n_jobs)
        return softmax_from_raw(np.asarray(raw).reshape(len(X), -1))
    return np.asarray(booster.predict(X, num_threads=n_jobs))


def metric_scorer(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The experiment's metric as a function of (y, pred); AUC by its rank-sum form.

    scikit-learn's roc_auc_score spends most of its time checking its input, which dominates when
    it is called once per feature and repeat. The rank-sum (Mann-Whitney) AUC is the same number:
    an exact multiple of 1/2 divided once by n_pos * n_neg, so it is within a few ulps of
    scikit-learn's trapezoid sum (the tests check 1e-12).
    """
    if metric == "auc":
        return rank_auc
    return lambda y, pred: score(metric, y, pred)


def permutation_drops(
    booster: lgb.Booster,
    X: np.ndarray,
    y: np.ndarray,
    task: str,
    metric: str,
    groups: list[list[int]],
    n_repeats: int,
    seed: int,
    n_jobs: int = 1,
    on_group: GroupCallback | None = None,
) -> FoldPermutation:
    """Drop in `metric` when each group of columns is permuted (a group's columns together).

    `booster` must hold exactly the trees to use (a fold model saved at its best iteration).
    """
    base_pred = predict_rows(booster, X, task, n_jobs)
    scorer = metric_scorer(metric)
    baseline = scorer(y, base_pred)
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    orders = permutation_indices(seed, len(X), n_repeats)
    paths = read_model(booster)
    leaves = _leaves(booster, X, paths, n_jobs)
    regions: dict[int, RowRegion] = {}
    drops = np.zeros((len(groups), n_repeats))
    plans = [(g, plan_group(X, columns, orders, paths, leaves, regions)) for g, columns in enumerate(groups)]
    predicted = done = 0
    for batch in _batches(plans, ROWS_PER_BATCH):
        blocks = [_permuted_block(X, groups[g], plan) for g, plan in batch]
        stacked = np.concatenate(blocks)
        pred = predict_rows(booster, stacked, task, n_jobs) if len(stacked) else base_pred[:0]
        start = 0
        for (g, plan), block in zip(batch, blocks):
            group_pred = pred[start : start + len(block)]
            start += len(block)
            for r in range(n_repeats):
                hit = plan.repeat == r
                if not hit.any():
                    continue  # no prediction changed: the drop is exactly 0
                permuted = base_pred.copy()
                permuted[plan.row[hit]] = group_pred[plan.pick[hit]]
                drops[g, r] = sign * (baseline - scorer(y, permuted))
            done += 1
            if on_group is not None:
                on_group(done, len(groups))
        predicted += start
    return FoldPermutation(baseline, drops, predicted, len(groups) * n_repeats * len(X))


def merge_drops(parts: list[FoldPermutation]) -> FoldPermutation:
    """One model's drops computed over consecutive chunks of its groups, as one call over every group gives them:
    a permuted row's prediction does not depend on which other rows are predicted with it."""
    return FoldPermutation(
        parts[0].baseline_score,
        np.vstack([part.drops for part in parts]),
        sum(part.rows_predicted for part in parts),
        sum(part.rows_total for part in parts),
    )


def _leaves(booster: lgb.Booster, X: np.ndarray, paths: ModelPaths, n_jobs: int) -> np.ndarray | None:
    """Leaf of every row in every tree, unless the model is linear or the matrix too big."""
    if paths.linear or len(X) * booster.num_trees() * 4 > MAX_LEAF_BYTES:
        return None
    return np.asarray(booster.predict(X, pred_leaf=True, num_threads=n_jobs), dtype="int32").reshape(len(X), -1)


def plan_group(
    X: np.ndarray,
    columns: list[int],
    orders: np.ndarray,
    paths: ModelPaths,
    leaves: np.ndarray | None,
    regions: dict[int, RowRegion],
) -> GroupPlan:
    """The permuted rows of one group whose prediction can change, one per distinct outcome."""
    n_repeats, n_rows = orders.shape
    changed = np.zeros((n_repeats, n_rows), dtype=bool)
    keys = []
    for column in columns:
        if paths.linear:  # linear leaves use raw values: any different value may change the output
            changed |= X[orders, column] != X[:, column]
            keys.append(orders)
            continue
        if not paths.used(column):
            continue  # the model never splits on it: no value changes anything
        if column not in regions:
            regions[column] = row_region(paths, column, X[:, column], leaves)
        region = regions[column]
        source_bins = region.own_bins[orders]
        for r in range(n_repeats):
            changed[r] |= ~region.keeps(X[orders[r], column], source_bins[r])
        keys.append(source_bins)
    repeat, row = np.nonzero(changed)
    if len(row) == 0:
        empty = np.zeros(0, dtype="int64")
        return GroupPlan(empty, empty, empty, empty, empty)
    key = np.column_stack([row] + [k[repeat, row] for k in keys])
    _, first, pick = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return GroupPlan(row[first], orders[repeat[first], row[first]], repeat, row, pick.reshape(-1))


def _permuted_block(X: np.ndarray, columns: list[int], plan: GroupPlan) -> np.ndarray:
    block = X[plan.rows]
    block[:, columns] = X[np.ix_(plan.sources, columns)]
    return block


def _batches(plans: list[tuple[int, GroupPlan]], max_rows: int):
    batch, rows = [], 0
    for item in plans:
        if batch and rows + len(item[1].rows) > max_rows:
            yield batch
            batch, rows = [], 0
        batch.append(item)
        rows += len(item[1].rows)
    if batch:
        yield batch
