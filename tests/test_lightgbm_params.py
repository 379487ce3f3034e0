"""LightGBM parameters are checked with the config: a wrong name, value or objective is a ConfigError (exit 2)
naming the key, before any run folder exists; aliases are accepted and actually used."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import load_config, validate_config
from pipeline.config.lightgbm_params import merge_params
from pipeline.core.errors import ConfigError
from pipeline.engine.spec import resolve_params
from tests.helpers.configs import write_config
from tests.helpers.paths import ROOT

BINARY = {"train": "sklearn:breast_cancer", "target": "target", "task": "binary"}
REGRESSION = {"train": "sklearn:diabetes", "target": "target", "task": "regression"}
LGB_MEMBER = {"name": "lgb", "family": "lightgbm"}

# (data, extra config sections, --set overrides, message): each bad through `train` and through validate_config.
BAD = {
    "misspelt name": (BINARY, {"model": {"params": {"num_leave": 20}}}, [], r"model\.params\.num_leave is not a "),
    "nearest name": (BINARY, {"model": {"params": {"num_leave": 20}}}, [], r"did you mean num_leaves\?"),
    "regression objective on binary": (
        BINARY,
        {"model": {"params": {"objective": "regression"}}},
        [],
        r"model\.params\.objective = 'regression' does not fit data\.task = 'binary'.*binary, cross_entropy",
    ),
    "binary objective on regression": (
        REGRESSION,
        {"model": {"params": {"objective": "binary"}}},
        [],
        r"model\.params\.objective = 'binary' does not fit data\.task = 'regression'.*regression_l1, ",
    ),
    "ranking objective": (
        BINARY,
        {"model": {"params": {"application": "lambdarank"}}},
        [],
        r"model\.params\.application = 'lambdarank' does not fit data\.task = 'binary'",
    ),
    "num_leaves = 1": (
        BINARY,
        {"model": {"params": {"num_leaves": 1}}},
        [],
        r"model\.params\.num_leaves = 1: LightGBM requires num_leaves > 1",
    ),
    "alias = 1": (
        BINARY,
        {"model": {"params": {"max_leaves": 1}}},
        [],
        r"max_leaves = 1: LightGBM requires num_leaves",
    ),
    "nan via --set": (BINARY, {}, ["model.params.learning_rate=nan"], r"model\.params\.learning_rate = nan: .*finite"),
    "negative learning rate": (
        BINARY,
        {"model": {"params": {"learning_rate": -0.1}}},
        [],
        r"model\.params\.learning_rate = -0\.1: LightGBM requires learning_rate > 0",
    ),
    "inf": (BINARY, {}, ["model.params.lambda_l2=inf"], r"model\.params\.lambda_l2 = inf: values must be finite"),
    "int param as float": (
        BINARY,
        {"model": {"params": {"num_leaves": 20.5}}},
        [],
        r"model\.params\.num_leaves = 20\.5: .*should be of type int",
    ),
    "rounds in params": (
        BINARY,
        {"model": {"params": {"n_estimators": 50}}},
        [],
        r"model\.params\.n_estimators = 50: .*set model\.num_boost_round instead",
    ),
    "early stopping in params": (
        BINARY,
        {"model": {"params": {"early_stopping_round": 5}}},
        [],
        r"early_stopping_round = 5: .*set model\.early_stopping_rounds instead",
    ),
    "metric in params": (BINARY, {"model": {"params": {"metric": "auc"}}}, [], r"set model\.metric instead"),
    "threads in params": (BINARY, {"model": {"params": {"n_jobs": 2}}}, [], r"n_jobs = 2: .*set model\.num_threads"),
    "file-only param": (
        BINARY,
        {"model": {"params": {"weight_column": "w"}}},
        [],
        r"weight_column: .*would be ignored",
    ),
    "bad member param": (
        BINARY,
        {"ensemble": {"members": [LGB_MEMBER, {**LGB_MEMBER, "name": "lgb2", "params": {"num_leaf": 1}}]}},
        [],
        r"ensemble\.members\[1\]\.params\.num_leaf \(member 'lgb2'\) = 1: LightGBM requires num_leaves > 1",
    ),
    "misspelt member param": (
        BINARY,
        {"ensemble": {"members": [{**LGB_MEMBER, "params": {"feature_fractoin": 0.5}}]}},
        [],
        r"ensemble\.members\[0\]\.params\.feature_fractoin \(member 'lgb'\) is not a LightGBM parameter",
    ),
    "bad search_space key": (
        BINARY,
        {"tune": {"search_space": {"num_leavs": {"low": 4, "high": 64}}}},
        [],
        r"tune\.search_space\.num_leavs is not a LightGBM parameter: .*did you mean num_leaves\?",
    ),
    "bad tune.fixed key": (BINARY, {"tune": {"fixed": {"lamda_l2": 1.0}}}, [], r"tune\.fixed\.lamda_l2 is not a "),
}


def raw_config(tmp_path: Path, data: dict, sections: dict) -> Path:
    model = {"num_boost_round": 20, "early_stopping_rounds": 5, "num_threads": 1, **sections.get("model", {})}
    model["params"] = {"learning_rate": 0.1, **model.get("params", {})}
    return write_config(tmp_path, data=data, **{**sections, "model": model})


@pytest.mark.parametrize("case", list(BAD))
def test_bad_params_exit_2_naming_the_key_and_write_nothing(tmp_path, capsys, case):
    data, sections, overrides, message = BAD[case]
    config = raw_config(tmp_path, data, sections)
    sets = [arg for item in overrides for arg in ("--set", item)]
    assert main(["train", "--config", str(config), "-q", *sets]) == 2
    out = capsys.readouterr()
    assert re.search(message, out.err), out.err
    assert "Traceback" not in out.err + out.out and "[LightGBM]" not in out.err + out.out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_params_are_refused_by_validate_config(tmp_path, case):
    data, sections, overrides, message = BAD[case]
    with pytest.raises(ConfigError, match=message):
        load_config(raw_config(tmp_path, data, sections), overrides)


def test_every_problem_is_listed_at_once():
    raw = {
        "experiment": {"name": "x"},
        "data": BINARY,
        "model": {"params": {"num_leaves": 1, "bagging_fraction": 2.0, "lambda_l1": -1}},
    }
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    lines = str(err.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "model.params.num_leaves = 1",
        "model.params.bagging_fraction = 2.0",
        "model.params.lambda_l1 = -1",
    ]


@pytest.mark.parametrize(
    "data, params",
    [
        (BINARY, {"eta": 0.2, "min_child_samples": 5, "colsample_bytree": 0.8, "subsample": 0.9}),
        (BINARY, {"objective": "xentropy", "random_state": 3, "verbosity": -1}),
        (REGRESSION, {"objective": "huber", "alpha": 1.5, "reg_lambda": 1.0}),
        (REGRESSION, {"loss": "tweedie", "tweedie_variance_power": 1.2}),
        ({**BINARY, "train": "sklearn:wine", "task": "multiclass"}, {"objective": "multiclassova", "max_depth": 4}),
    ],
)
def test_real_names_aliases_and_fitting_objectives_validate(data, params):
    cfg = validate_config({"experiment": {"name": "x"}, "data": data, "model": {"params": params}})
    assert cfg.model.params == params  # validated, not rewritten: the config hash stays what it was


def test_an_alias_replaces_the_default_instead_of_losing_to_it():
    # LightGBM prefers a primary name over an alias, so {learning_rate: 0.05, eta: 0.3} would train at 0.05.
    resolved = resolve_params("binary", "auc", {"eta": 0.3, "min_child_samples": 5}, 1, 42, 1)
    assert resolved["learning_rate"] == 0.3 and "eta" not in resolved
    assert resolved["min_data_in_leaf"] == 5 and "min_child_samples" not in resolved
    assert merge_params({"verbose": -1}, {"verbosity": 1}) == {"verbose": 1}  # keeps the place and spelling
    assert merge_params({"a_param": 1}, {"num_leaves": 7}) == {"a_param": 1, "num_leaves": 7}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    load_config(path)


def test_train_with_aliases_trains_with_their_values(tmp_path, adult_small):
    data = {"train": str(adult_small), "target": "income", "task": "binary", "split_column": "split"}
    data["positive_label"] = ">50K"
    config = raw_config(tmp_path, data, {"model": {"params": {"eta": 0.3, "min_child_samples": 40}}})
    assert main(["train", "--config", str(config), "-q", "--run-id", "r1"]) == 0
    params = json.loads((tmp_path / "runs" / "exp" / "r1" / "schema.json").read_text())["params"]
    assert params["learning_rate"] == 0.3 and params["min_data_in_leaf"] == 40 and "eta" not in params


@pytest.mark.parametrize(
    "params, message",
    [
        ({"num_leave": 8}, r"num_leave in --params file .*bad\.json is not a LightGBM parameter"),
        ({"params": {"min_data_in_leaf": -3}}, r"min_data_in_leaf in --params file .* = -3: LightGBM requires"),
        ({"objective": "multiclass"}, r"objective in --params file .* = 'multiclass' does not fit"),
    ],
)
def test_bad_params_file_exits_2_before_any_run_folder(tmp_path, capsys, params, message):
    config = raw_config(tmp_path, BINARY, {})
    (tmp_path / "bad.json").write_text(json.dumps(params))
    assert main(["train", "--config", str(config), "-q", "--params", str(tmp_path / "bad.json")]) == 2
    out = capsys.readouterr()
    assert re.search(message, out.err), out.err
    assert "Traceback" not in out.err and not (tmp_path / "runs").exists()


def test_bad_member_params_file_is_refused_before_any_member_trains(tmp_path, capsys):
    (tmp_path / "best.json").write_text(json.dumps({"params": {"num_leaves": 1, "lambda_l2": 0.5}}))
    member = {"name": "tuned", "family": "lightgbm", "params_file": str(tmp_path / "best.json")}
    ensemble = {"members": [LGB_MEMBER, member], "combiners": ["soft_vote"]}
    config = raw_config(tmp_path, BINARY, {"ensemble": ensemble})
    assert main(["ensemble", "--config", str(config), "-q"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"num_leaves in member 'tuned''s params_file .*best\.json = 1: LightGBM requires num_leaves", err)
    exp_dir = tmp_path / "runs" / "exp"
    assert "Traceback" not in err and (not exp_dir.exists() or {p.name for p in exp_dir.iterdir()} <= {"folds"})
