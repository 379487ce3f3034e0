"""Any experiment's table may be a folder or glob of parts: the same rows give the same run."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.cli import main
from tests.helpers.configs import write_config

DATA = {"target": "income", "task": "binary", "positive_label": ">50K"}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_table_in_parts_trains_like_the_one_file(tmp_path, adult, suffix):
    rows = adult[adult["split"] == "train"].drop(columns="split").sample(3000, random_state=0).reset_index(drop=True)
    parts = tmp_path / "parts"
    parts.mkdir()
    for k, chunk in enumerate((rows.iloc[:1000], rows.iloc[1000:2500], rows.iloc[2500:])):
        path = parts / f"part-{k}{suffix}"
        chunk.to_parquet(path, index=False) if suffix == ".parquet" else chunk.to_csv(path, index=False)
    whole = tmp_path / f"whole{suffix}"
    rows.to_parquet(whole, index=False) if suffix == ".parquet" else rows.to_csv(whole, index=False)
    oof = {}
    for name, train in (("parts", str(parts)), ("glob", str(parts / f"part-*{suffix}")), ("whole", str(whole))):
        config = write_config(tmp_path, name, data={"train": train, **DATA}, cv={"n_splits": 3, "seed": 0})
        assert main(["train", "--config", str(config), "-q", "--run-id", "r"]) == 0
        oof[name] = pd.read_parquet(tmp_path / "runs" / name / "r" / "oof.parquet")
    pd.testing.assert_frame_equal(oof["parts"], oof["whole"])
    pd.testing.assert_frame_equal(oof["glob"], oof["whole"])
