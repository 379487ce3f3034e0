"""Shared data of the features tests: a small real slice of Online Retail and the retail spec.

Plain cached functions (not a conftest.py: a second conftest module would shadow the root one
that other tests import by name); each is computed once per session. Callers must not mutate
the returned frames (copy first).
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd
from conftest import ROOT, shared_file

from features.build import build_features
from features.spec import FeaturesSection
from pipeline.config import load_config

RETAIL = "online_retail/online_retail.parquet"


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
def retail_spec() -> FeaturesSection:
    """The [features] section of configs/retail.toml, as shipped."""
    return load_config(ROOT / "configs" / "retail.toml").features


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
    return FeaturesSection.model_validate({**spec.model_dump(), "windows": ["7d", "30d", 1, "all"],
                                           "trends": [t.model_dump() for t in trends]})


@lru_cache(maxsize=1)
def day_table() -> pd.DataFrame:
    """The day spec's feature table of the slice."""
    return stacked(retail_slice(), day_spec())


@lru_cache(maxsize=1)
def value_spec() -> FeaturesSection:
    """The retail spec with values as features (first, last and mode of text and of numbers) and the
    recency of cancellations."""
    spec = retail_spec()
    aggregations = {**spec.aggregations, "total": (*spec.aggregations["total"], "first", "last", "mode"),
                    "Country": ("mode", "last"), "StockCode": ("nunique", "first", "last", "mode")}
    return FeaturesSection.model_validate({**spec.model_dump(), "windows": [1, 3, "30d", "all"],
                                           "aggregations": aggregations, "recency_of": ["is_cancel"]})


@lru_cache(maxsize=1)
def value_table() -> pd.DataFrame:
    """The value spec's feature table of the slice."""
    return stacked(retail_slice(), value_spec())


def short_labels(events: pd.DataFrame, rows: pd.DataFrame, days: int) -> pd.Series:
    """Spend over [cutoff, cutoff + days) above 300, per training row, with plain pandas."""
    spend = events.assign(total=events["Quantity"] * events["UnitPrice"]).dropna(subset=["CustomerID"])
    out = []
    for cutoff, group in rows.groupby("cutoff", sort=False):
        inside = spend[(spend["InvoiceDate"] >= cutoff) & (spend["InvoiceDate"] < cutoff + pd.Timedelta(days=days))]
        total = inside.groupby("CustomerID")["total"].sum().round(9)
        out.append((group["CustomerID"].map(total).fillna(0.0) > 300).astype("int8"))
    return pd.concat(out).sort_index().rename("label")
