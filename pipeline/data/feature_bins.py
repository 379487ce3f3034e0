"""Reference bins of a feature matrix: how the training rows fall into fixed bins per feature, so that any
later rows can be counted into the same bins and compared (`gbpipe drift`, predict's drift check).

A numeric feature gets quantile edges of its training values, distinct edges only, and the bins
(-inf, e1], (e1, e2], ..., (ek, +inf), then one bin for missing values. A categorical feature (the matrix
holds vocabulary codes, NaN for missing) gets one bin per code, then missing, then unseen: categories
absent from the vocabulary, which the conversion turns into NaN and counts per column
(`ConversionReport.unseen_categories`), so they are moved from the missing bin to their own. Training
counts no unseen value by construction.

`gbpipe train` saves them as drift_reference.json; the format is `ReferenceBins.to_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.errors import ArtifactError

from .schema import FeatureSchema

REFERENCE_FILE = "drift_reference.json"
MAX_COMPARED_EDGES = 16  # up to this many edges a column is counted by comparisons, beyond by binary search
FORMAT = 1
BIN_LAYOUT = (
    "numeric: (-inf, edges[0]], (edges[0], edges[1]], ..., (edges[-1], +inf), then missing; "
    "categorical: one bin per vocabulary code (schema.json's order), then missing, then unseen"
)


@dataclass(frozen=True)
class FeatureBins:
    """One feature's bins and its training counts per bin (value bins, missing, and unseen for categories)."""

    name: str
    kind: str  # numeric | categorical
    counts: np.ndarray  # int64
    edges: np.ndarray | None = None  # numeric: the inner edges, increasing
    n_categories: int = 0  # categorical: the vocabulary's size

    def count(self, column: np.ndarray, unseen: int = 0, work: np.ndarray | None = None) -> np.ndarray:
        """The counts of one matrix column in these bins; `unseen` rows of its NaN are unseen categories."""
        if self.kind == "numeric":
            return numeric_counts(column, self.edges, work)
        return category_counts(column, self.n_categories, unseen)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            doc["edges"] = [float(e) for e in self.edges]
        else:
            doc["categories"] = self.n_categories
        return {**doc, "counts": [int(c) for c in self.counts]}


@dataclass(frozen=True)
class ReferenceBins:
    """Every feature's bins, in the schema's column order, with the number of training rows counted."""

    features: tuple[FeatureBins, ...]
    n_rows: int
    n_bins: int  # the quantile bins asked for; a feature with tied values has fewer

    def counts(
        self, X: np.ndarray, unseen: Mapping[str, int] | None = None, work: np.ndarray | None = None
    ) -> list[np.ndarray]:
        """Counts of the rows of X (the same columns) in every feature's bins; `work`: see numeric_counts."""
        unseen = unseen or {}
        return [b.count(X[:, j], unseen.get(b.name, 0), work) for j, b in enumerate(self.features)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "bins": BIN_LAYOUT,
            "n_rows": self.n_rows,
            "n_bins": self.n_bins,
            "features": [b.to_dict() for b in self.features],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = REFERENCE_FILE) -> ReferenceBins:
        try:
            features = tuple(_feature_from_dict(f) for f in doc["features"])
            return cls(features, int(doc["n_rows"]), int(doc["n_bins"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where} is not a drift reference gbpipe wrote ({exc!r}); retrain the run") from None

    def check(self, schema: FeatureSchema, where: str = REFERENCE_FILE) -> None:
        """Refuse bins that do not match the schema's columns, kinds and vocabularies."""
        expected = [(c, schema.kinds[c], len(schema.categories.get(c, ()))) for c in schema.columns]
        found = [(b.name, b.kind, b.n_categories) for b in self.features]
        if found != expected:
            raise ArtifactError(
                f"{where} describes other features than the run's schema.json (columns, kinds or category "
                "counts differ); the file was not written with this run: retrain it"
            )


def fit_reference(X: np.ndarray, schema: FeatureSchema, n_bins: int) -> ReferenceBins:
    """The bins of every feature fitted on the rows of X, with their counts; deterministic."""
    features = []
    for j, name in enumerate(schema.columns):
        column = X[:, j]
        if schema.kinds[name] == "categorical":
            size = len(schema.categories[name])
            features.append(FeatureBins(name, "categorical", category_counts(column, size), n_categories=size))
        else:
            edges = numeric_edges(column, n_bins)
            features.append(FeatureBins(name, "numeric", numeric_counts(column, edges), edges=edges))
    return ReferenceBins(tuple(features), int(X.shape[0]), n_bins)


def numeric_edges(column: np.ndarray, n_bins: int) -> np.ndarray:
    """Distinct inner quantile edges of the column's values (missing ones left out).

    inverted_cdf picks observed values, never an interpolation between two of them, so values near the
    float range (+/-1e308) cannot overflow into an infinite edge; a bin (-inf, edge] holds at least its
    quantile's share, and a value that fills several quantiles (a spike at 0) gets one bin."""
    values = column[~np.isnan(column)]
    if not len(values):
        return np.empty(0)
    return np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins, method="inverted_cdf"))


def numeric_counts(column: np.ndarray, edges: np.ndarray, work: np.ndarray | None = None) -> np.ndarray:
    """Counts in (-inf, e1], ..., (ek, +inf), then missing.

    The column (a strided slice of a row-major matrix) is copied once so that the passes below read it in
    order, into `work` when given (a float64 array at least as long: a counter reuses one for every column and
    chunk instead of allocating a column's worth each time). With few edges, one counting comparison per edge
    beats a binary search per value several times over (NaN compares false, so it falls in no value bin)."""
    if work is None or len(work) < len(column):
        values = np.ascontiguousarray(column)
    else:
        values = work[: len(column)]
        np.copyto(values, column)
    present = int(np.count_nonzero(values == values))  # NaN != NaN
    if len(edges) <= MAX_COMPARED_EDGES:
        at_or_below = [int(np.count_nonzero(values <= edge)) for edge in edges]
        counts = np.diff(np.asarray([0, *at_or_below, present], dtype="int64"))
    else:
        counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
        counts[-1] -= len(values) - present  # NaN sorts past every edge
    return np.append(counts.astype("int64"), len(values) - present)


def category_counts(codes: np.ndarray, n_categories: int, unseen: int = 0) -> np.ndarray:
    """Counts per vocabulary code, then missing, then unseen (`unseen` of the NaN rows)."""
    values = np.ascontiguousarray(codes)
    missing = np.isnan(values)
    counts = np.bincount(np.where(missing, n_categories, values).astype("int64"), minlength=n_categories + 1)
    n_missing = int(counts[n_categories])
    unseen = min(unseen, n_missing)
    return np.append(counts[:n_categories].astype("int64"), [n_missing - unseen, unseen])


def _feature_from_dict(doc: dict[str, Any]) -> FeatureBins:
    counts = np.asarray(doc["counts"], dtype="int64")
    if doc["kind"] == "numeric":
        edges = np.asarray(doc["edges"], dtype="float64")
        if len(counts) != len(edges) + 2:
            raise ValueError(f"feature {doc['name']!r}: {len(edges)} edges but {len(counts)} counts")
        return FeatureBins(str(doc["name"]), "numeric", counts, edges=edges)
    if doc["kind"] != "categorical" or len(counts) != int(doc["categories"]) + 2:
        raise ValueError(f"feature {doc['name']!r}: kind {doc['kind']!r} with {len(counts)} counts")
    return FeatureBins(str(doc["name"]), "categorical", counts, n_categories=int(doc["categories"]))
