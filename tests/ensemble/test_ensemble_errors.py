"""Bad ensemble configs and untrusted model files: clear errors, nothing written."""

from __future__ import annotations

import importlib.util
import os
import re

import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

from pipeline.cli import main
from pipeline.core.errors import ArtifactError
from pipeline.ensemble.members import load_skops
from tests.helpers.configs import write_config
from tests.helpers.ensemble import ensemble_config

CANCER = {"train": "sklearn:breast_cancer", "target": "target", "task": "binary"}
DIABETES = {"train": "sklearn:diabetes", "target": "target", "task": "regression"}
WINE = {"train": "sklearn:wine", "target": "target", "task": "multiclass"}
LGB = {"name": "lgb", "family": "lightgbm"}
LOGISTIC = {"name": "logistic", "family": "logistic"}
RIDGE = {"name": "ridge", "family": "ridge"}


@pytest.mark.parametrize(
    "data, members, settings, message",
    [
        (CANCER, [LGB, RIDGE], {}, r"member 'ridge': family 'ridge' is for regression; use 'logistic'"),
        (DIABETES, [LGB, LOGISTIC], {}, r"member 'logistic': family 'logistic' is a classifier; use 'ridge'"),
        (DIABETES, [LGB, RIDGE], {"combiners": ["hard_vote"]}, r"'hard_vote' votes on class labels"),
        (WINE, [LGB, LOGISTIC], {"blend_on": "rank"}, r"blend_on = 'rank' .* binary task scored by auc"),
        (
            CANCER,
            [LGB, {"name": "dart", "family": "lightgbm", "params": {"boosting": "dart"}}],
            {},
            r"member 'dart': dart cannot early-stop.*set num_boost_round on the member",
        ),
        (
            CANCER,
            [LGB, {"name": "trees", "family": "extra_trees", "params": {"n_trees": 5}}],
            {},
            r"member 'trees': unknown extra_trees parameters \['n_trees'\]; valid ones are .*'n_estimators'",
        ),
        (
            CANCER,
            [LGB, LOGISTIC],
            {"stack_features": ["mean radius", "colour"]},
            r"stack_features names \['colour'\], which are not features",
        ),
        (CANCER, [LGB], {}, r"combiners .* need at least two members; got \['lgb'\]"),
        (
            CANCER,
            [LGB, LOGISTIC],
            {"combiners": ["soft_vote"], "use": "stack"},
            r"ensemble.use 'stack' is neither a member nor one of the combiners \['soft_vote'\]",
        ),
        (
            CANCER,
            [LGB, {**LOGISTIC, "name": "lgb"}],
            {},
            r"ensemble.members: names must be unique; repeated: \['lgb'\]",
        ),
        (
            CANCER,
            [LGB, LOGISTIC],
            {"vote_weights": {"lgb": 1.0, "forest": 2.0}},
            r"vote_weights names \['forest'\], which are not members",
        ),
        (CANCER, [LGB, {**LOGISTIC, "family": "svm"}], {}, r"ensemble.members.1.family"),
        (
            CANCER,
            [LGB, {"name": "tuned", "family": "lightgbm", "params_file": "/nonexistent/best_params.json"}],
            {},
            r"member 'tuned': params_file /nonexistent/best_params.json not found",
        ),
    ],
)
def test_bad_ensemble_config_is_refused_before_anything_is_written(tmp_path, capsys, data, members, settings, message):
    config = ensemble_config(tmp_path, "bad", data, members, **settings)
    assert main(["ensemble", "--config", str(config), "-q"]) == 2
    assert re.search(message, capsys.readouterr().err), message
    exp_dir = tmp_path / "runs" / "bad"
    assert not exp_dir.exists() or not [p for p in exp_dir.iterdir() if p.name not in ("folds",)]


def test_a_config_without_ensemble_section_says_how_to_add_one(tmp_path, capsys):
    config = write_config(tmp_path, "plain", data=CANCER)
    assert main(["ensemble", "--config", str(config), "-q"]) == 2
    assert "has no [ensemble] section; add members" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["xgboost", "catboost"])
def test_optional_family_that_is_not_installed_names_the_install_command(tmp_path, capsys, family):
    if importlib.util.find_spec(family) is not None:
        pytest.skip(f"{family} is installed here")
    config = ensemble_config(tmp_path, "extra", CANCER, [LGB, {"name": "other", "family": family}])
    assert main(["ensemble", "--config", str(config), "-q"]) == 2
    assert (
        f"needs the {family} package, which is not installed; install it with `pip install {family}`"
        in capsys.readouterr().err
    )


def test_a_skops_file_with_an_untrusted_type_is_not_loaded():
    data = sio.dumps(FunctionTransformer(func=os.system))
    with pytest.raises(ArtifactError, match=r"member 'x': the stored model holds types outside the trusted list"):
        load_skops(data, "member 'x'")
