"""Online Retail for the features tests: a small real slice, the shipped retail spec and variants of it,
their feature tables, and the retail config with fast CLI settings.

The data and tables are plain cached functions, each computed once per session. Callers must not mutate
the returned frames (copy first).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from features.build import build_features
from features.spec import FeaturesSection
from pipeline.config import load_config
from tests.helpers.datasets import shared_file
from tests.helpers.paths import ROOT

RETAIL = "online_retail/online_retail.parquet"
CONFIG_ERROR, DATA_ERROR = 2, 3
FAST = [
    "--set",
    "model.num_threads=1",
    "--set",
    "model.num_boost_round=150",
    "--set",
    "model.early_stopping_rounds=20",
    "--set",
    "model.params.learning_rate=0.1",
    "--set",
    "cv.n_splits=3",
    "-q",
]


@lru_cache(maxsize=1)
def retail_events() -> pd.DataFrame:
    """The whole real table (541,909 lines)."""
    return pd.read_parquet(shared_file(RETAIL))


@lru_cache(maxsize=1)
def retail_slice() -> pd.DataFrame:
    """Every line of 300 random customers plus 1,500 lines without a customer (real rows, original order)."""
    events = retail_events()
    customers = events["CustomerID"].dropna().drop_duplicates().sample(300, random_state=7)
    keep = events["CustomerID"].isin(customers)
    anonymous = events[events["CustomerID"].isna()].sample(1500, random_state=7).index
    keep[anonymous] = True
    return events[keep].reset_index(drop=True)


@lru_cache(maxsize=1)
def two_year_events() -> pd.DataFrame:
    """The two-year table `gbpipe data` assembles (1,044,847 lines), joined from the real files."""
    from pipeline.data.assembly import FIRST_YEAR, SECOND_YEAR, join_years

    first, second = pd.read_parquet(shared_file(FIRST_YEAR)), pd.read_parquet(shared_file(SECOND_YEAR))
    return join_years(first, second, (FIRST_YEAR, SECOND_YEAR))[0]


@lru_cache(maxsize=1)
def two_year_slice() -> pd.DataFrame:
    """Every line of 250 random customers of the two-year table (real rows, original order)."""
    events = two_year_events()
    customers = events["CustomerID"].dropna().drop_duplicates().sample(250, random_state=11)
    return events[events["CustomerID"].isin(customers)].reset_index(drop=True)


@lru_cache(maxsize=1)
def retail_spec() -> FeaturesSection:
    """The [features] section of configs/retail_1y.toml (the flagship task on one year), as shipped."""
    return load_config(ROOT / "configs" / "retail_1y.toml").features


def stacked(events: pd.DataFrame, spec: FeaturesSection, target: str = "label") -> pd.DataFrame:
    """Training and test rows of the feature table in one frame."""
    table = build_features(events, spec, target, "test events")
    return pd.concat([table.train, table.test], ignore_index=True)


@lru_cache(maxsize=1)
def slice_table() -> pd.DataFrame:
    """The retail spec's feature table of the slice."""
    return stacked(retail_slice(), retail_spec())


@lru_cache(maxsize=1)
def day_spec() -> FeaturesSection:
    """The retail spec with windows of days beside months, and a trend over 14 days."""
    spec = retail_spec()
    trends = (*spec.trends, spec.trends[0].model_copy(update={"windows": ("14d",)}))
    return FeaturesSection.model_validate(
        {**spec.model_dump(), "windows": ["7d", "30d", 1, "all"], "trends": [t.model_dump() for t in trends]}
    )


@lru_cache(maxsize=1)
def day_table() -> pd.DataFrame:
    """The day spec's feature table of the slice."""
    return stacked(retail_slice(), day_spec())


@lru_cache(maxsize=1)
def value_spec() -> FeaturesSection:
    """The retail spec with values as features (first, last and mode of text and of numbers) and the
    recency of cancellations."""
    spec = retail_spec()
    aggregations = {
        **spec.aggregations,
        "total": (*spec.aggregations["total"], "first", "last", "mode"),
        "Country": ("mode", "last"),
        "StockCode": ("nunique", "first", "last", "mode"),
    }
    return FeaturesSection.model_validate(
        {
            **spec.model_dump(),
            "windows": [1, 3, "30d", "all"],
            "aggregations": aggregations,
            "recency_of": ["is_cancel"],
        }
    )


@lru_cache(maxsize=1)
def value_table() -> pd.DataFrame:
    """The value spec's feature table of the slice."""
    return stacked(retail_slice(), value_spec())


def with_test(spec: FeaturesSection, test: str) -> FeaturesSection:
    """The spec with another test cutoff."""
    cutoffs = {**spec.cutoffs.model_dump(), "test": test}
    return FeaturesSection.model_validate({**spec.model_dump(), "cutoffs": cutoffs})


def short_labels(events: pd.DataFrame, rows: pd.DataFrame, days: int) -> pd.Series:
    """Spend over [cutoff, cutoff + days) above 300, per training row, with plain pandas."""
    spend = events.assign(total=events["Quantity"] * events["UnitPrice"]).dropna(subset=["CustomerID"])
    out = []
    for cutoff, group in rows.groupby("cutoff", sort=False):
        inside = spend[(spend["InvoiceDate"] >= cutoff) & (spend["InvoiceDate"] < cutoff + pd.Timedelta(days=days))]
        total = inside.groupby("CustomerID")["total"].sum().round(9)
        out.append((group["CustomerID"].map(total).fillna(0.0) > 300).astype("int8"))
    return pd.concat(out).sort_index().rename("label")


def tamper_with_future(events: pd.DataFrame, cutoff: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """Change and delete random lines dated on or after the cutoff: amounts, invoices, products, customers
    (to another customer or a new one), and times (moved, staying on or after the cutoff)."""
    events = events.copy()
    future = np.flatnonzero((events["InvoiceDate"] >= cutoff).to_numpy())
    picked = rng.choice(future, size=min(60, len(future)), replace=False)
    changed, deleted = picked[:40], picked[40:]
    customers = events["CustomerID"].dropna().unique()
    events.loc[changed, "Quantity"] = rng.integers(-50, 500, len(changed))
    events.loc[changed, "UnitPrice"] = rng.uniform(0, 100, len(changed)).round(2)
    events.loc[changed[:10], "InvoiceNo"] = [f"C9{k:05d}" for k in range(10)]
    events.loc[changed[:10], "StockCode"] = "TAMPERED"
    events.loc[changed[10:20], "CustomerID"] = rng.choice(customers, 10)
    events.loc[changed[20:25], "CustomerID"] = 99_999.0  # a customer who appears only in the future
    shift = pd.to_timedelta(rng.integers(0, 72, len(changed[25:])), unit="h")
    events.loc[changed[25:], "InvoiceDate"] = events.loc[changed[25:], "InvoiceDate"] + shift
    return events.drop(index=deleted).reset_index(drop=True)


def retail_config(tmp_path: Path, events: Path, changes: dict | None = None, config: str = "retail_1y") -> Path:
    """configs/<config>.toml (default: the one-year flagship) with runs and events in tmp_path, and nested
    `changes` applied (None deletes)."""
    raw = tomllib.loads((ROOT / "configs" / f"{config}.toml").read_text())
    raw["experiment"]["runs_dir"] = str(tmp_path / "runs")
    raw["features"]["events"] = str(events)
    for key, value in (changes or {}).items():
        node = raw
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(key.split(".")[-1], None)
        else:
            node[key.split(".")[-1]] = value
    path = tmp_path / "retail.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def write_events(tmp_path: Path, frame: pd.DataFrame, suffix: str = ".parquet") -> Path:
    path = tmp_path / f"events{suffix}"
    frame.to_parquet(path, index=False) if suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


def only_run(exp_dir: Path) -> Path:
    """The one run folder (with scores.json) of an experiment."""
    runs = [p for p in exp_dir.iterdir() if p.is_dir() and (p / "scores.json").is_file()]
    assert len(runs) == 1
    return runs[0]


def known_labels_per_fold(run: Path, scores: dict, label: pd.DateOffset) -> list[tuple[pd.Timestamp, pd.Series]]:
    """Each time fold's first validated cutoff and the cutoffs of the rows whose labels were known then; checks that
    the fold trained on exactly those rows (counted from the row keys, not from the folds code)."""
    folds = pd.read_parquet(run / "folds.parquet")
    cutoffs = pd.to_datetime(folds["row_key"].str.split("@").str[1])
    checked = []
    for fold in scores["folds"]:
        first_validated = cutoffs[folds["fold"] == fold["fold"]].min()
        known = cutoffs + label <= first_validated
        assert fold["n_train"] == int(known.sum()) > 0
        checked.append((first_validated, cutoffs[known]))
    return checked
