"""The feature table built on a Dask cluster from the two-year retail events split into 8 parquet files: the table
`gbpipe features` builds in-process from the same files, cell by cell, and the same summary."""

from __future__ import annotations

import json

import pandas as pd

from tests.helpers.reliability import cli, untimed
from tests.helpers.retail import retail_config, two_year_events


def cached_table(runs) -> tuple[pd.DataFrame, dict]:
    (folder,) = (runs / "retail_2y" / "features").iterdir()
    return pd.read_parquet(folder / "features.parquet"), json.loads((folder / "summary.json").read_text())


def test_features_on_cluster_equal_the_in_process_build(tmp_path, capsys, dask_address):
    events = two_year_events()
    parts = tmp_path / "events"
    parts.mkdir()
    bounds = [len(events) * k // 8 for k in range(9)]
    for k in range(8):  # in time order, as daily exports would be: a customer's events span several files
        events.iloc[bounds[k] : bounds[k + 1]].to_parquet(parts / f"part_{k}.parquet", index=False)
    tables = {}
    for name, extra in (("here", ()), ("there", ("--cluster", dask_address))):
        (tmp_path / name).mkdir()
        config = retail_config(tmp_path / name, parts, {"experiment.name": "retail_2y"}, config="retail")
        code, err = cli(capsys, "features", "--config", config, *extra)
        assert code == 0, err
        tables[name] = cached_table(tmp_path / name / "runs")
    assert "shuffled by CustomerID into 8 partitions" in err
    (here, here_summary), (there, there_summary) = tables.values()
    assert len(here) > 80_000 and here["CustomerID"].nunique() > 5_000
    pd.testing.assert_frame_equal(here, there, check_exact=True)
    naming = frozenset({"folder"})
    assert untimed(here_summary, naming) == untimed(there_summary, naming)
