"""A training run's fold models loaded back for prediction, with the schema and labels they need;
every file is checked against the run's manifest (sha256) before it is used."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

from pipeline.core.errors import DataError
from pipeline.core.run_folder import RunReader
from pipeline.data.schema import FeatureSchema
from pipeline.data.tables import LabelEncoding

from .fold import predict as predict_booster
from .outputs import id_is_position


@dataclass(frozen=True)
class FittedRun:
    """A run's fold models with the schema and labels needed to predict."""

    boosters: tuple[lgb.Booster, ...]
    schema: FeatureSchema
    labels: LabelEncoding
    id_name: str
    task: str
    id_is_position: bool = False

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean over the fold models, in the order training averaged them."""
        preds = [predict_booster(b, X, self.task, b.current_iteration()) for b in self.boosters]
        return np.mean(preds, axis=0)


def load_fold_models(reader: RunReader) -> FittedRun:
    """The fold models and schema of a training run, in the order training averaged them."""
    doc = reader.read_json("schema.json")
    names = sorted((n for n in reader.files if n.startswith("models/") and n.endswith(".txt")), key=_model_order)
    if not names:
        raise DataError(f"{reader.dir} has no fold models (models/fold_<k>.txt); train it with `gbpipe train`")
    boosters = tuple(lgb.Booster(model_str=reader.read_bytes(n).decode()) for n in names)
    return FittedRun(
        boosters,
        FeatureSchema.from_dict(doc["features"]),
        LabelEncoding.from_dict(doc["labels"]),
        doc["id"],
        doc["task"],
        id_is_position(doc),
    )


def _model_order(name: str) -> tuple[int, int]:
    """models/fold_3.txt -> (0, 3); models/fold_3_r1.txt -> (1, 3): the order training used."""
    stem = name.removeprefix("models/fold_").removesuffix(".txt")
    fold, _, repeat = stem.partition("_r")
    return int(repeat or 0), int(fold)
