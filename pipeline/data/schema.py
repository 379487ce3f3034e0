"""The feature schema: which columns feed the model, their kinds and category vocabularies.

Columns are matched by name, never by position; the same conversion serves training and predict.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.core.errors import DataError

_JSON_CHARS = re.compile(r'[\[\]{}":,\s]')


@dataclass(frozen=True)
class FeatureSchema:
    """Feature columns in model order with kind ('numeric' | 'categorical') and vocabularies."""

    columns: tuple[str, ...]
    kinds: dict[str, str]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    id_column: str | None = None
    rare: dict[str, tuple[str, ...]] = field(default_factory=dict)  # training values grouped with missing
    keep: tuple[str, ...] = ()  # input columns carried into the predictions (data.keep)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if self.kinds[c] == "categorical"]

    @property
    def model_names(self) -> list[str]:
        """Names safe for LightGBM (no JSON characters), unique, in column order."""
        return safe_names(self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "kinds": self.kinds,
            "categories": {k: list(v) for k, v in self.categories.items()},
            "id_column": self.id_column,
            "rare_categories": {k: list(v) for k, v in self.rare.items()},
            "keep": list(self.keep),
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> FeatureSchema:
        return cls(
            tuple(obj["columns"]),
            dict(obj["kinds"]),
            {k: tuple(v) for k, v in obj["categories"].items()},
            obj.get("id_column"),
            {k: tuple(v) for k, v in obj.get("rare_categories", {}).items()},
            tuple(obj.get("keep", ())),
        )


def safe_names(columns: tuple[str, ...] | list[str]) -> list[str]:
    names, seen = [], set()
    for col in columns:
        name = _JSON_CHARS.sub("_", str(col)) or "feature"
        base, k = name, 1
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


def flat_column_names(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Column names as text: tuples (from groupby/agg or a MultiIndex) joined with '_', others str().

    The same rule serves training and predict; the frame is returned as is when every name is text.
    """
    names = list(frame.columns)
    if all(isinstance(c, str) for c in names) and not isinstance(frame.columns, pd.MultiIndex):
        return frame
    flat = ["_".join(str(p) for p in c if str(p) != "") if isinstance(c, tuple) else str(c) for c in names]
    dupes = sorted({c for c in flat if flat.count(c) > 1})
    if dupes:
        raise DataError(
            f"{source}: {len(flat) - len(set(flat))} column names collide once flattened to text: "
            f"{dupes}; rename the columns so each is unique"
        )
    out = frame.copy(deep=False)
    out.columns = flat
    return out


MIN_ROWS_ID_LIKE = 50  # below this, a distinct value per row is ordinary in a small table


def id_like_columns(frame: pd.DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    """(text columns, integer columns) holding a distinct value on every row: identifiers, not features.

    A text identifier as a categorical only memorises rows, so it is excluded; an integer one can be a
    legitimate count, so it is only warned about.
    """
    if len(frame) < MIN_ROWS_ID_LIKE:
        return [], []
    text, integer = [], []
    for col in columns:
        series = frame[col]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_float_dtype(series):
            continue
        if series.notna().all() and series.nunique() == len(frame):
            (integer if pd.api.types.is_integer_dtype(series) else text).append(col)
    return text, integer


def nested_columns(frame: pd.DataFrame) -> list[str]:
    """Columns holding lists, arrays, structs or maps (parquet's nested types): no model can split on them."""
    nested = []
    for col in frame.columns:
        if frame[col].dtype == object:
            first = frame[col].dropna().head(1)
            if len(first) and isinstance(first.iloc[0], list | tuple | dict | set | np.ndarray):
                nested.append(col)
    return nested


def drop_nested_columns(frame: pd.DataFrame, cfg: Config, source: str, nested: list[str] | None = None) -> pd.DataFrame:
    """The frame without its nested columns (warned about); DataError when the config needs one of them.
    A table read in batches names them from its file's schema (`nested`): one batch may hold only nulls."""
    nested = nested_columns(frame) if nested is None else [c for c in nested if c in frame.columns]
    if not nested:
        return frame
    data = cfg.data
    needed = {data.target, data.id, cfg.cv.group, cfg.cv.time, *data.keep, *(data.features or ())} - {None}
    used = [c for c in nested if c in needed]
    if used:
        raise DataError(
            f"{source}: columns {used} hold lists or structs (nested parquet types), which cannot be a target, "
            "an id, a group, a kept column or a feature; flatten them into plain columns first"
        )
    warnings.warn(
        f"{source}: columns {nested} hold lists or structs (nested parquet types) and are not used as features; "
        "flatten them into plain columns if they matter",
        stacklevel=2,
    )
    return frame.drop(columns=nested)


def select_features(
    frame: pd.DataFrame, cfg: Config, source: str, id_like: tuple[list[str], list[str], int] | None = None
) -> list[str]:
    """The feature columns: data.features if given, else every column but target, id, group and exclusions.
    A table read in batches gives its first batch as `frame` and `id_like` found over all its rows (see there)."""
    data = cfg.data
    absent = [c for c in data.keep if c not in frame.columns]
    if absent:
        raise DataError(
            f"data.keep names {len(absent)} columns not in {source}: {absent}; "
            f"columns are: {', '.join(map(str, frame.columns))}"
        )
    if data.features is not None:
        missing = [c for c in data.features if c not in frame.columns]
        if missing:
            raise DataError(
                f"data.features names {len(missing)} columns not in {source}: {missing}; "
                f"columns are: {', '.join(map(str, frame.columns))}"
            )
        return list(data.features)
    unknown = [c for c in data.exclude if c not in frame.columns]
    if unknown:
        raise DataError(f"data.exclude names {len(unknown)} columns not in {source}: {unknown}")
    dropped = {data.target, data.id, cfg.cv.group, cfg.cv.time, *data.exclude, *data.keep} - {None}
    columns = [c for c in frame.columns if c not in dropped]
    dates = [c for c in columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if dates:
        warnings.warn(
            f"date columns {dates} in {source} are not used as features; derive numbers from them "
            "(e.g. in the features stage) if they matter",
            stacklevel=2,
        )
    columns = [c for c in columns if c not in dates]
    text_ids, integer_ids, n_rows = id_like if id_like is not None else (*id_like_columns(frame, columns), len(frame))
    text_ids = [c for c in text_ids if c in columns]
    integer_ids = [c for c in integer_ids if c in columns]
    if text_ids:
        warnings.warn(
            f"{len(text_ids)} text columns of {source} hold a distinct value on each of its {n_rows} "
            f"rows and are excluded as identifiers: {text_ids}; set data.id to keep one as the row id, "
            "or list data.features explicitly to use it anyway",
            stacklevel=2,
        )
        columns = [c for c in columns if c not in text_ids]
    if integer_ids:
        warnings.warn(
            f"{len(integer_ids)} integer columns of {source} hold a distinct value on each of its "
            f"{n_rows} rows and look like ids, but are kept as features: {integer_ids}; add them to "
            "data.exclude (or set data.id) if they are identifiers",
            stacklevel=2,
        )
    if not columns:
        raise DataError(f"{source} has no feature columns left after excluding {sorted(map(str, dropped))}")
    return columns


def infer_schema(
    frame: pd.DataFrame, columns: list[str], cfg: Config, text_counts: dict[str, pd.Series] | None = None
) -> FeatureSchema:
    """Kinds from dtypes (text, category and bool-like text become categorical) plus data.categorical.
    A table read in batches gives its first batch and `text_counts` (`category_counts` over all its rows)."""
    listed = set(cfg.data.categorical or ())
    unknown = listed - set(columns)
    if unknown:
        raise DataError(f"data.categorical names {len(unknown)} columns that are not features: {sorted(unknown)}")
    kinds, categories, rare = {}, {}, {}
    for col in columns:
        series = frame[col]
        if col in listed or not is_number_dtype(series.dtype):
            kinds[col] = "categorical"
            counts = text_counts[col] if text_counts is not None else vocabulary_counts(series)
            common = counts >= cfg.data.min_category_rows
            categories[col] = tuple(sorted(counts.index[common]))
            if not common.all():
                rare[col] = tuple(sorted(counts.index[~common]))
        else:
            kinds[col] = "numeric"
    return FeatureSchema(tuple(columns), kinds, categories, cfg.data.id, rare, cfg.data.keep)


_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


def is_number_dtype(dtype) -> bool:
    """Numbers and booleans: what infer_schema keeps numeric unless data.categorical lists it."""
    return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def categorical_candidates(frame: pd.DataFrame, columns: list[str], cfg: Config) -> list[str]:
    """The `columns` infer_schema may make categorical: text-like ones and those listed in data.categorical."""
    listed = set(cfg.data.categorical or ())
    return [c for c in columns if c in listed or not is_number_dtype(frame[c].dtype)]


def vocabulary_counts(series: pd.Series) -> pd.Series:
    """Rows per category value, as text (missing left out): what a vocabulary is made of."""
    return _as_text(series).value_counts()


def numeric_text_columns(
    frame: pd.DataFrame, schema: FeatureSchema, listed: tuple[str, ...], text_counts: dict[str, pd.Series] | None = None
) -> dict[str, str]:
    """Inferred categorical columns whose values are mostly numbers (some written as '1,234', some not numbers
    at all, e.g. a stray date): what each holds, for a warning. A column listed in data.categorical is meant."""
    found = {}
    for col in schema.columns:
        if schema.kinds[col] != "categorical" or col in listed:
            continue
        # Inferred categoricals are text already: hashed counts, not _as_text's per-value formatting again.
        counts = text_counts[col] if text_counts is not None else frame[col].value_counts()
        values = counts.index.astype(str).to_series()
        plain = pd.to_numeric(values, errors="coerce").notna().to_numpy()
        grouped = values.str.fullmatch(_THOUSANDS).to_numpy(dtype=bool)
        n_plain, n_grouped, total = int(counts[plain].sum()), int(counts[grouped].sum()), int(counts.sum())
        n_other = total - n_plain - n_grouped
        if not total or n_plain + n_grouped < total / 2 or (n_other == 0 and n_grouped == 0):
            continue
        parts = [f"{n_plain + n_grouped} of {total} values are numbers"]
        if n_grouped:
            parts.append(f"{n_grouped} written with thousands separators (e.g. {values[grouped][:3].tolist()})")
        if n_other:
            parts.append(f"{n_other} are not numbers (e.g. {values[~(plain | grouped)][:3].tolist()})")
        found[col] = "; ".join(parts)
    return found


def _as_text(series: pd.Series) -> pd.Series:
    """Category values as text; missing stays missing.

    Whole-number floats print as integers, so a code column read as int in training and as float at
    predict (one missing value turns a CSV column into floats) keeps matching its vocabulary.
    """
    out = series.astype("object").where(series.notna(), None)
    return out.map(_category_text)


def _category_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass
class ConversionReport:
    """Counts of what the conversion changed, per column, for warnings and the summary."""

    unseen_categories: dict[str, int] = field(default_factory=dict)
    infinite_to_nan: dict[str, int] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    cast_to_numeric: dict[str, int] = field(default_factory=dict)  # numeric columns that arrived as text
    missing_keep: list[str] = field(default_factory=list)  # data.keep columns the input lacks


def to_matrix(
    schema: FeatureSchema, frame: pd.DataFrame, source: str, report: ConversionReport | None = None
) -> np.ndarray:
    """Convert a frame to the float64 model matrix; columns matched by name."""
    report = report if report is not None else ConversionReport()
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source} lacks {len(missing)} feature columns the model needs: {missing}; "
            "add them (NaN is allowed for missing values)"
        )
    report.extra_columns = extra_columns(schema, frame.columns)
    matrix = np.empty((len(frame), len(schema.columns)), dtype="float64")
    for j, col in enumerate(schema.columns):
        if schema.kinds[col] == "categorical":
            matrix[:, j] = _category_codes(frame[col], schema.categories[col], schema.rare.get(col, ()), col, report)
        else:
            matrix[:, j] = _numeric(frame[col], col, source, report)
    return matrix


def extra_columns(schema: FeatureSchema, columns) -> list[str]:
    """The columns of a table the model neither uses nor carries (its id and data.keep): ignored, and reported."""
    return [c for c in columns if c not in schema.columns and c != schema.id_column and c not in schema.keep]


def _category_codes(
    series: pd.Series, vocab: tuple[str, ...], rare: tuple[str, ...], col: str, report: ConversionReport
) -> np.ndarray:
    """Codes of the vocabulary's values; missing, rare (grouped with missing) and unseen values are NaN."""
    text = _as_text(series)
    values = text.to_numpy(dtype=object)
    # get_indexer gives -1 for values outside the vocabulary (pd.Categorical with unknown values is deprecated).
    codes = pd.Index(list(vocab), dtype="object").get_indexer(values).astype("float64")
    present = text.notna().to_numpy()
    codes[~present] = -1
    # A rare value was seen in training and grouped with missing on purpose: not counted as unseen.
    candidates = present & (pd.Index(list(rare), dtype="object").get_indexer(values) < 0) if rare else present
    unseen = int(((codes < 0) & candidates).sum())
    if unseen:  # added up: a table read in batches is converted a batch at a time
        report.unseen_categories[col] = report.unseen_categories.get(col, 0) + unseen
    codes[codes < 0] = np.nan
    return codes


def _numeric(series: pd.Series, col: str, source: str, report: ConversionReport) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    else:
        converted = pd.to_numeric(series, errors="coerce")
        failed = int((converted.isna() & series.notna()).sum())
        if failed:
            examples = series[converted.isna() & series.notna()].astype(str).unique()[:3].tolist()
            raise DataError(
                f"column {col!r} in {source} should be numeric but {failed} values are not "
                f"(e.g. {examples}); fix or blank them"
            )
        cast = int(series.notna().sum())
        if cast:
            report.cast_to_numeric[col] = report.cast_to_numeric.get(col, 0) + cast
        values = converted.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    return nan_infinities(values, col, report)


def nan_infinities(values: np.ndarray, col: str, report: ConversionReport) -> np.ndarray:
    """One policy for train and predict: infinities become missing values, and are counted."""
    infinite = np.isinf(values)
    if infinite.any():
        report.infinite_to_nan[col] = report.infinite_to_nan.get(col, 0) + int(infinite.sum())
        values = np.where(infinite, np.nan, values)
    return values
