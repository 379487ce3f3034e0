"""A run's drift reference and settings: the training rows' bins saved by `gbpipe train` (drift_reference.json),
checked against the run's schema, or, for a run trained before the file existed, rebuilt from the run's
training rows with the same code; and the [drift] settings of the config the run was trained with."""

from __future__ import annotations

import tomllib

import numpy as np
from pydantic import ValidationError

from pipeline.config.sections import DriftSection
from pipeline.core.errors import ArtifactError
from pipeline.core.run_folder import RunReader
from pipeline.data.feature_bins import REFERENCE_FILE, ReferenceBins, fit_reference
from pipeline.data.schema import FeatureSchema

SAVED = "saved at training"
REBUILT = "rebuilt from the run's training rows"


def saved_reference(reader: RunReader, schema: FeatureSchema) -> ReferenceBins | None:
    """The run's drift_reference.json (sha256-checked, matched to the schema), or None for an older run."""
    if not reader.has(REFERENCE_FILE):
        return None
    reference = ReferenceBins.from_dict(reader.read_json(REFERENCE_FILE), str(reader.dir / REFERENCE_FILE))
    reference.check(schema, str(reader.dir / REFERENCE_FILE))
    return reference


def run_reference(
    reader: RunReader, schema: FeatureSchema, X_train: np.ndarray, settings: DriftSection
) -> tuple[ReferenceBins, str]:
    """The saved reference, else one fitted on the run's training rows as training would have; with its source."""
    saved = saved_reference(reader, schema)
    if saved is not None:
        return saved, SAVED
    return fit_reference(X_train, schema, settings.n_bins), REBUILT


def run_settings(reader: RunReader) -> DriftSection:
    """The [drift] section of the config the run was trained with (defaults when it had none). Only that
    section is read: predict must not depend on the rest of an older run's config still validating."""
    try:
        raw = tomllib.loads(reader.read_bytes("config.toml").decode())
        return DriftSection.model_validate(raw.get("drift") or {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValidationError) as exc:
        raise ArtifactError(
            f"{reader.dir / 'config.toml'}: its [drift] section cannot be read ({exc}); the file is not the one "
            "training wrote: retrain the run"
        ) from None
