"""What `prepare` gives every stage: the experiment's model-ready data."""

from __future__ import annotations

from dataclasses import dataclass, replace
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

    def without_ids(self) -> Prepared:
        """This data without its training ids, as long as the table and used by no model, for a stage that keeps
        them in a file while it needs the memory: an empty id column of their name and type stands in for them,
        and `with_ids` puts them back."""
        train = self.tables.train
        if self.id_name in train.columns:
            train = train.drop(columns=[self.id_name])
        return replace(self, ids=self.ids.iloc[:0].copy(), tables=replace(self.tables, train=train))

    def with_ids(self, ids: pd.Series, columns: pd.Index) -> Prepared:
        """`without_ids` undone: `ids` (one per training row, read back from where the stage kept them) in their
        type, and in the training table again at their place among `columns` when they were there (one array for
        both)."""
        ids = ids.astype(self.ids.dtype).rename(self.ids.name)  # pandas shares the values: no copy
        train = self.tables.train
        if self.id_name in columns:
            train = train.copy(deep=False)
            train.insert(columns.get_loc(self.id_name), self.id_name, ids)
            ids = train[self.id_name]
        return replace(self, ids=ids, tables=replace(self.tables, train=train))
