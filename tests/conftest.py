"""Suite-wide fixtures: real adult data, whole and as a small CSV in tmp_path.

Plain helpers (configs, dataset paths, runs) live in tests/helpers; import them as tests.helpers.<module>.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.datasets import shared_file

DASK_ENV = "GBPIPE_TEST_DASK_SCHEDULER"


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    return pd.read_parquet(shared_file("adult/adult.parquet"))


@pytest.fixture
def adult_small(tmp_path: Path, adult: pd.DataFrame) -> Path:
    """4,000 training and 1,000 test rows of adult as one CSV with a split column."""
    train = adult[adult["split"] == "train"].sample(4000, random_state=0)
    test = adult[adult["split"] == "test"].sample(1000, random_state=0)
    path = tmp_path / "adult_small.csv"
    pd.concat([train, test]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """A Dask scheduler with 2 single-threaded workers: CI's (GBPIPE_TEST_DASK_SCHEDULER, started by .ci/run), else a
    LocalCluster started for the session. Tests reach it by address, as a user reaches a real one."""
    address = os.environ.get(DASK_ENV)
    if address:
        yield address
        return
    if os.environ.get("GBPIPE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{DASK_ENV} is not set but GBPIPE_REQUIRE_SERVICES=1: the cluster tests must run on CI's cluster")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, protocol="tcp://"
    ) as cluster:
        yield cluster.scheduler_address
