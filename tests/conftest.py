"""Suite-wide fixtures: real adult data, whole and as a small CSV in tmp_path.

Plain helpers (configs, dataset paths, runs) live in tests/helpers; import them as tests.helpers.<module>.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.datasets import shared_file


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
