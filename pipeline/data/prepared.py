"""What `prepare` gives every stage: the experiment's model-ready data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .folds import Folds
from .schema import FeatureSchema
from .tables import LabelEncoding, Tables


@dataclass(frozen=True)
class Prepared:
    """Model-ready data of one experiment."""

    X: np.ndarray  # or a StreamedMatrix (stream.py), when `prepare` was asked to stream and data.batch_rows did
    y: np.ndarray
    ids: pd.Series
    schema: FeatureSchema
    labels: LabelEncoding
    folds: Folds
    data_fingerprint: str
    tables: Tables
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    test_ids: pd.Series | None = None

    @property
    def id_name(self) -> str:
        return str(self.ids.name)
