"""What `prepare` gives every stage: the experiment's model-ready data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .folds import Folds
from .schema import FeatureSchema
from .tables import LabelEncoding, Tables

if TYPE_CHECKING:
    from .stream import StreamedMatrix


@dataclass(frozen=True)
class Prepared:
    """Model-ready data of one experiment."""

    X: np.ndarray | StreamedMatrix  # streamed when `prepare` was asked to and data.batch_rows says so
    y: np.ndarray
    ids: pd.Series
    schema: FeatureSchema
    labels: LabelEncoding
    folds: Folds
    data_fingerprint: str
    tables: Tables
    X_test: np.ndarray | StreamedMatrix | None = None
    y_test: np.ndarray | None = None
    test_ids: pd.Series | None = None

    @property
    def id_name(self) -> str:
        return str(self.ids.name)
