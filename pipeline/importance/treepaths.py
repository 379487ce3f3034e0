"""Which changes of a feature value cannot change a LightGBM model's prediction for a row.

Read from the model text (thresholds and category bitsets at full precision there):

- Global bins: two values on the same side of every threshold the model has on a feature (same
  category set at every categorical split) take the same path through every tree.
- Row regions: a row's prediction depends on a feature only through the splits on that feature
  along the row's own paths (one path per tree, found with `pred_leaf`). Any value inside the
  interval those splits allow (the category set they allow) keeps every path, hence the leaves
  and the prediction, bit for bit.

Missing values and LightGBM's zero-as-missing (|x| <= float32(1e-35)) are "special": a change to or
from a special value counts as unchanged only when the global bin says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold is the float 1e-35f
MAX_CATEGORY_CODES = 4096  # wider categorical features skip the row regions (memory n x codes)


@dataclass(frozen=True)
class Tree:
    """One tree's split arrays; child < 0 means leaf ~child."""

    feature: np.ndarray
    threshold: np.ndarray
    categorical: np.ndarray
    left: np.ndarray
    right: np.ndarray
    category_sets: tuple[np.ndarray, ...]  # member codes, indexed by a categorical node's threshold
    num_leaves: int


@dataclass(frozen=True)
class ModelPaths:
    """The splits of one model per feature, and per tree and leaf what its path requires."""

    n_features: int
    thresholds: tuple[np.ndarray, ...]  # sorted numeric thresholds per feature
    category_sets: dict[int, tuple[np.ndarray, ...]]  # categorical feature -> member codes per split
    bounds: dict[int, list[tuple[int, np.ndarray, np.ndarray]]]  # numeric feature -> (tree, lo, hi per leaf)
    allowed: dict[int, list[tuple[int, np.ndarray]]]  # categorical feature -> (tree, codes mask per leaf)
    n_codes: dict[int, int]  # categorical feature -> mask width (last slot: every larger code)
    linear: bool

    def used(self, feature: int) -> bool:
        return feature in self.category_sets or len(self.thresholds[feature]) > 0


def read_model(booster: lgb.Booster) -> ModelPaths:
    """Parse the booster's text into its per-feature splits and per-leaf path requirements."""
    blocks = tree_blocks(booster.model_to_string())
    linear = any(b.get("is_linear", "0").strip() == "1" for b in blocks)
    trees = [_parse_tree(b) for b in blocks]
    n_features = booster.num_feature()
    thresholds: list[list[float]] = [[] for _ in range(n_features)]
    category_sets: dict[int, list[np.ndarray]] = {}
    for tree in trees:
        for node in range(len(tree.feature)):
            f = int(tree.feature[node])
            if tree.categorical[node]:
                category_sets.setdefault(f, []).append(tree.category_sets[int(tree.threshold[node])])
            else:
                thresholds[f].append(float(tree.threshold[node]))
    n_codes = {f: int(max((s.max() + 1 for s in sets if len(s)), default=0)) + 1 for f, sets in category_sets.items()}
    bounds, allowed = _leaf_requirements(trees, {f: n for f, n in n_codes.items() if n <= MAX_CATEGORY_CODES})
    return ModelPaths(
        n_features,
        tuple(np.unique(np.asarray(t, dtype="float64")) for t in thresholds),
        {f: tuple(s) for f, s in category_sets.items()},
        bounds,
        allowed,
        n_codes,
        linear,
    )


def tree_blocks(model_text: str) -> list[dict[str, str]]:
    """key=value fields of each `Tree=k` block of a LightGBM model text."""
    trees: list[dict[str, str]] = []
    for line in model_text.splitlines():
        if line.startswith("end of trees"):
            break
        key, sep, value = line.partition("=")
        if key == "Tree":
            trees.append({})
        elif sep and trees:
            trees[-1][key] = value
    return trees


def _parse_tree(block: dict[str, str]) -> Tree:
    def ints(key: str) -> np.ndarray:
        return np.asarray(block.get(key, "").split(), dtype="int64")

    decision = ints("decision_type")
    boundaries = ints("cat_boundaries")
    words = np.asarray(block.get("cat_threshold", "").split(), dtype="uint32")
    sets = tuple(_bitset_members(words[boundaries[k] : boundaries[k + 1]]) for k in range(len(boundaries) - 1))
    return Tree(
        ints("split_feature"),
        np.asarray(block.get("threshold", "").split(), dtype="float64"),
        (decision & 1).astype(bool),
        ints("left_child"),
        ints("right_child"),
        sets,
        int(block.get("num_leaves", "1")),
    )


def _bitset_members(words: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(words.astype("<u4").view("uint8"), bitorder="little")
    return np.flatnonzero(bits)


def _leaf_requirements(trees: list[Tree], n_codes: dict[int, int]):
    """Per tree and leaf: the interval (lo, hi] of each numeric feature and the allowed codes of
    each categorical feature that the path from the root to the leaf requires."""
    bounds: dict[int, list] = {}
    allowed: dict[int, list] = {}
    for t, tree in enumerate(trees):
        if tree.num_leaves < 2:
            continue
        lo: dict[int, np.ndarray] = {}
        hi: dict[int, np.ndarray] = {}
        masks: dict[int, np.ndarray] = {}
        stack = [(0, {}, {})]  # node, numeric (lo, hi) so far, category masks so far
        while stack:
            node, intervals, cats = stack.pop()
            if node < 0:
                leaf = ~node
                for f, (a, b) in intervals.items():
                    lo.setdefault(f, np.full(tree.num_leaves, -np.inf))[leaf] = a
                    hi.setdefault(f, np.full(tree.num_leaves, np.inf))[leaf] = b
                for f, mask in cats.items():
                    masks.setdefault(f, np.ones((tree.num_leaves, n_codes[f]), dtype=bool))[leaf] = mask
                continue
            f = int(tree.feature[node])
            for child, went_left in ((tree.left[node], True), (tree.right[node], False)):
                if tree.categorical[node]:
                    if f not in n_codes:
                        stack.append((child, intervals, cats))
                        continue
                    members = np.zeros(n_codes[f], dtype=bool)
                    members[tree.category_sets[int(tree.threshold[node])]] = True
                    current = cats.get(f, np.ones(n_codes[f], dtype=bool))
                    stack.append((child, intervals, {**cats, f: current & (members if went_left else ~members)}))
                else:
                    a, b = intervals.get(f, (-np.inf, np.inf))
                    th = float(tree.threshold[node])
                    new = (a, min(b, th)) if went_left else (max(a, th), b)
                    stack.append((child, {**intervals, f: new}, cats))
        for f in lo:
            bounds.setdefault(f, []).append((t, lo[f], hi[f]))
        for f, m in masks.items():
            allowed.setdefault(f, []).append((t, m))
    return bounds, allowed


def special(values: np.ndarray) -> np.ndarray:
    """Values LightGBM may send the missing-value way: NaN, and zero for missing_type=Zero."""
    return np.isnan(values) | (np.abs(values) <= ZERO_THRESHOLD)


def value_bins(values: np.ndarray, feature: int, paths: ModelPaths) -> np.ndarray:
    """An integer per value; equal integers guarantee equal decisions at every split on `feature`."""
    if feature in paths.category_sets:
        return _category_bins(values, paths.category_sets[feature])
    below = np.searchsorted(paths.thresholds[feature], values, side="left")  # thresholds < value
    bins = below.astype("int64") * 2 + (np.abs(values) <= ZERO_THRESHOLD)
    return np.where(np.isnan(values), -1, bins)


def _category_bins(values: np.ndarray, category_sets: tuple[np.ndarray, ...]) -> np.ndarray:
    """Codes in the same category set at every split share a bin; LightGBM truncates the value to
    int, sends negative codes right, and treats missing by its own rule (so it gets its own bin)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    codes = np.trunc(np.nan_to_num(distinct, nan=-1.0))
    signature = np.stack([np.isin(codes, members) for members in category_sets], axis=1)
    signature = np.column_stack([signature, np.isnan(distinct), codes < 0])
    _, group = np.unique(signature, axis=0, return_inverse=True)
    return group.reshape(-1)[inverse].astype("int64")


@dataclass(frozen=True)
class RowRegion:
    """For each row, the values of one feature that keep all its paths (hence its prediction)."""

    feature: int
    own_bins: np.ndarray
    own_special: np.ndarray
    lo: np.ndarray | None = None  # numeric: a value v keeps the paths when lo < v <= hi
    hi: np.ndarray | None = None
    codes_ok: np.ndarray | None = None  # categorical: (rows, n_codes) allowed codes

    def keeps(self, values: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """True where row i given values[i] (with global bins[i]) surely keeps its prediction."""
        same = bins == self.own_bins
        if self.lo is not None:
            plain = ~(self.own_special | special(values))
            same |= plain & (values > self.lo) & (values <= self.hi)
        elif self.codes_ok is not None:
            codes = np.trunc(np.nan_to_num(values, nan=-1.0))
            plain = ~self.own_special & (codes >= 0)
            slots = np.clip(codes, 0, self.codes_ok.shape[1] - 1).astype("int64")
            same |= plain & self.codes_ok[np.arange(len(values)), slots]
        return same


def row_region(paths: ModelPaths, feature: int, values: np.ndarray, leaves: np.ndarray | None) -> RowRegion:
    """The region of each row for one feature; `leaves` is pred_leaf of the rows (None: bins only)."""
    own_bins = value_bins(values, feature, paths)
    if feature in paths.category_sets:  # categorical: missing or negative codes take special ways
        own_special = np.isnan(values) | (np.trunc(np.nan_to_num(values, nan=-1.0)) < 0)
    else:
        own_special = special(values)
    if leaves is None or paths.linear:
        return RowRegion(feature, own_bins, own_special)
    if feature in paths.bounds:
        lo = np.full(len(values), -np.inf)
        hi = np.full(len(values), np.inf)
        for t, tree_lo, tree_hi in paths.bounds[feature]:
            np.maximum(lo, tree_lo[leaves[:, t]], out=lo)
            np.minimum(hi, tree_hi[leaves[:, t]], out=hi)
        return RowRegion(feature, own_bins, own_special, lo=lo, hi=hi)
    if feature in paths.allowed:
        ok = np.ones((len(values), paths.n_codes[feature]), dtype=bool)
        for t, masks in paths.allowed[feature]:
            ok &= masks[leaves[:, t]]
        return RowRegion(feature, own_bins, own_special, codes_ok=ok)
    return RowRegion(feature, own_bins, own_special)
