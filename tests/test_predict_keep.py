"""data.keep: input columns carried into the predictions next to the id, never features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from tests.helpers.configs import write_config


def cancer_with_ids() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.head(300)
    # an integer code and a text code, both informative by construction: a leak if they became features
    return frame.assign(patient=np.arange(300) * 7 + frame["target"], site=np.where(frame["target"] == 1, "a", "b"))


def config_with(tmp_path: Path, **data) -> Path:
    cancer_with_ids().to_csv(tmp_path / "train.csv", index=False)
    return write_config(
        tmp_path,
        data={
            "train": str(tmp_path / "train.csv"),
            "target": "target",
            "task": "binary",
            "keep": ["patient", "site"],
            **data,
        },
    )


@pytest.fixture
def kept_run(tmp_path) -> Path:
    assert main(["train", "--config", str(config_with(tmp_path)), "-q", "--run-id", "r1"]) == 0
    return tmp_path / "runs" / "exp" / "r1"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_kept_columns_are_carried_into_predictions_and_are_not_features(kept_run, tmp_path, capsys, suffix):
    schema = json.loads((kept_run / "schema.json").read_text())
    assert schema["features"]["keep"] == ["patient", "site"]
    assert not {"patient", "site"} & set(schema["features"]["columns"])
    rows = cancer_with_ids().drop(columns=["target"])
    rows.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / f"out{suffix}"
    assert (
        main(
            [
                "predict",
                "--run",
                str(kept_run),
                "--input",
                str(tmp_path / "new.csv"),
                "--output",
                str(out),
                "--chunk-size",
                "64",
            ]
        )
        == 0
    )
    assert "the model does not use" not in capsys.readouterr().err  # kept columns are not reported as dropped
    predicted = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(predicted.columns) == ["row_id", "patient", "site", "pred", "label_pred"]
    assert predicted["patient"].tolist() == rows["patient"].tolist()
    assert predicted["site"].tolist() == rows["site"].tolist()


def test_an_input_without_the_kept_columns_predicts_the_same_with_a_warning(kept_run, tmp_path, capsys):
    rows = cancer_with_ids().drop(columns=["target"])
    rows.to_csv(tmp_path / "full.csv", index=False)
    rows.drop(columns=["site"]).to_csv(tmp_path / "short.csv", index=False)
    for name in ("full", "short"):
        assert (
            main(
                [
                    "predict",
                    "--run",
                    str(kept_run),
                    "--input",
                    str(tmp_path / f"{name}.csv"),
                    "--output",
                    str(tmp_path / f"{name}_out.csv"),
                ]
            )
            == 0
        )
    assert "short.csv lacks ['site'], which the run carries into its predictions" in capsys.readouterr().err
    full, short = pd.read_csv(tmp_path / "full_out.csv"), pd.read_csv(tmp_path / "short_out.csv")
    assert list(short.columns) == ["row_id", "patient", "pred", "label_pred"]
    assert np.array_equal(full["pred"].to_numpy(), short["pred"].to_numpy())


def test_a_kept_column_whose_type_changes_between_chunks(kept_run, tmp_path, capsys):
    rows = cancer_with_ids().drop(columns=["target"])
    first_float = rows.astype({"patient": "float64"})
    first_float.loc[0, "patient"] = np.nan  # chunk 1 reads floats, chunk 2 integers: cast to the first
    first_float.to_csv(tmp_path / "a.csv", index=False)
    assert (
        main(
            [
                "predict",
                "--run",
                str(kept_run),
                "--input",
                str(tmp_path / "a.csv"),
                "--output",
                str(tmp_path / "a.parquet"),
                "--chunk-size",
                "100",
            ]
        )
        == 0
    )
    assert pd.read_parquet(tmp_path / "a.parquet")["patient"].iloc[1:].tolist() == rows["patient"].iloc[1:].tolist()
    later_missing = rows.astype({"patient": "float64"})
    later_missing.loc[250, "patient"] = np.nan  # chunk 1 integers, a later one floats: a null in the integers
    later_missing.to_csv(tmp_path / "b.csv", index=False)
    assert (
        main(
            [
                "predict",
                "--run",
                str(kept_run),
                "--input",
                str(tmp_path / "b.csv"),
                "--output",
                str(tmp_path / "b.parquet"),
                "--chunk-size",
                "100",
            ]
        )
        == 0
    )
    patient = pd.read_parquet(tmp_path / "b.parquet")["patient"]
    assert patient.isna().sum() == 1 and patient.dropna().tolist() == rows["patient"].drop(index=250).tolist()
    later_text = rows.astype({"patient": "object"})
    later_text.loc[250, "patient"] = "unknown"  # chunk 1 integers, a later chunk text: no common type
    later_text.to_csv(tmp_path / "c.csv", index=False)
    assert (
        main(
            [
                "predict",
                "--run",
                str(kept_run),
                "--input",
                str(tmp_path / "c.csv"),
                "--output",
                str(tmp_path / "c.parquet"),
                "--chunk-size",
                "100",
            ]
        )
        == 3
    )
    assert "columns ['patient'] of the input change type between chunks" in capsys.readouterr().err
    assert not (tmp_path / "c.parquet").exists() and not list(tmp_path.glob(".c.parquet*"))


BAD_KEEPS = [
    ("named like a prediction", {"keep": ["pred"]}, 2, r"data.keep: \['pred'\] would collide with the id"),
    ("named like the row position id", {"keep": ["row_id"]}, 2, r"data.keep: \['row_id'\] would collide with the id"),
    ("named like a class's prediction", {"keep": ["pred_1"]}, 2, r"\['pred_1'\] would collide"),
    (
        "also a feature",
        {"features": ["mean radius", "patient"]},
        2,
        r"data.keep: \['patient'\] are also in data.features",
    ),
    (
        "not in the training table",
        {"keep": ["patient", "ward"]},
        3,
        r"data.keep names 1 columns not in .*train.csv: \['ward'\]; columns are: mean radius",
    ),
    ("repeated", {"keep": ["site", "site"]}, 2, r"data.keep repeats a column"),
]


@pytest.mark.parametrize("name,data,code,message", BAD_KEEPS, ids=[b[0] for b in BAD_KEEPS])
def test_bad_keep_fails_clearly_and_writes_nothing(tmp_path, capsys, name, data, code, message):
    import re

    assert main(["train", "--config", str(config_with(tmp_path, **data)), "-q"]) == code, name
    assert re.search(message, capsys.readouterr().err), name
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("manifest.json"))
