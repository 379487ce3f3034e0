"""An ensemble run loaded for prediction: the selected model (a member, or a combiner over members)
with the same `.predict(X)`, schema, labels, id name and task as a single-model run."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ArtifactError
from pipeline.core.run_folder import RunReader
from pipeline.data.schema import FeatureSchema
from pipeline.data.tables import LabelEncoding
from pipeline.engine.outputs import id_is_position

from .combiners import Combiner
from .members import FittedMember, load_fitted_member
from .stack import MetaModel

WEIGHTS = "ensemble/weights.json"


@dataclass(frozen=True)
class FittedEnsemble:
    """Members' fold models plus the combiner that joins them (None when a single member is selected)."""

    members: tuple[FittedMember, ...]
    combiner: Combiner | None
    schema: FeatureSchema
    labels: LabelEncoding
    id_name: str
    task: str
    selected: str
    id_is_position: bool = False

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Each member's mean over its fold models, then the combiner: as the run's test_pred was made."""
        preds = [member.predict(X) for member in self.members]
        if self.combiner is None:
            return preds[0]
        raw = X[:, list(self.combiner.raw_columns)] if self.combiner.raw_columns else None
        return self.combiner.predict(preds, raw)


def is_ensemble_run(reader: RunReader) -> bool:
    return reader.has(WEIGHTS)


def load_ensemble(reader: RunReader, model: str | None = None) -> FittedEnsemble:
    """Load (sha256-checked) the run's selected model, or the named member or combiner, with the
    members it needs."""
    doc = reader.read_json("schema.json")
    weights = reader.read_json(WEIGHTS)
    selected = model or weights["selected"]
    labels = LabelEncoding.from_dict(doc["labels"])
    if selected in weights["members"]:
        names, combiner = [selected], None
    else:
        combiner = _load_combiner(reader, weights, selected)
        names = list(combiner.members)
    members = tuple(_load_member(reader, name, doc["task"], labels.n_classes) for name in names)
    return FittedEnsemble(
        members,
        combiner,
        FeatureSchema.from_dict(doc["features"]),
        labels,
        doc["id"],
        doc["task"],
        selected,
        id_is_position(doc),
    )


def _load_combiner(reader: RunReader, weights: dict, selected: str) -> Combiner:
    spec = weights["combiners"].get(selected)
    if spec is None:
        raise ArtifactError(
            f"{reader.dir / WEIGHTS} has no member or combiner {selected!r}; it has "
            f"{weights['members'] + list(weights['combiners'])}"
        )
    meta = None
    if spec["kind"] == "stack":
        meta_doc = reader.read_json("ensemble/meta_model.json")
        text = reader.read_bytes("ensemble/meta_model.txt").decode() if meta_doc["kind"] == "lightgbm" else ""
        meta = MetaModel.from_dict(meta_doc, text)
    return Combiner.from_dict(spec, meta)


def _load_member(reader: RunReader, name: str, task: str, n_classes: int) -> FittedMember:
    folder = f"members/{name}/"
    doc = json.loads(reader.read_bytes(folder + "member.json"))
    files = {model: reader.read_bytes(folder + model) for model in doc["models"]}
    return load_fitted_member(name, doc["family"], task, n_classes, files)
