"""Config validation: unknown keys with suggestions, types, ranges, overrides, hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.cli import main
from pipeline.config.experiment import apply_override, load_config, validate_config
from pipeline.core.errors import ConfigError
from tests.helpers.paths import ROOT

BASE = {"experiment": {"name": "x"}, "data": {"train": "t.csv", "target": "y", "task": "binary"}}


def with_(section: str, **values) -> dict:
    raw = {k: dict(v) for k, v in BASE.items()}
    raw.setdefault(section, {}).update(values)
    return raw


@pytest.mark.parametrize(
    "raw, match",
    [
        (with_("cv", n_split=5), r"unknown key 'cv.n_split'; did you mean 'cv.n_splits'\?"),
        (with_("model", num_boost_rounds=10), r"did you mean 'model.num_boost_round'"),
        ({**BASE, "modle": {}}, r"unknown key 'modle'; did you mean 'model'"),
        (with_("cv", n_splits="five"), r"cv.n_splits: .*integer.*'five'"),
        (with_("cv", n_splits=1), r"cv.n_splits: .*greater than or equal to 2.*\(got 1\)"),
        (with_("data", task="ranking"), r"data.task: .*'binary', 'multiclass' or 'regression'.*'ranking'"),
        (with_("data", test_size=1.5), r"data.test_size: .*less than 1"),
        (
            {"experiment": {"name": "x"}, "data": {"train": "t.csv", "task": "binary"}},
            r"missing required key 'data.target'",
        ),
        (with_("model", metric="rmse"), r"model.metric 'rmse' is not available for task 'binary'; choose one of auc"),
        (with_("cv", splitter="group"), r"cv.splitter 'group' needs cv.group"),
        (with_("cv", splitter="time"), r"needs cv.time"),
        (
            with_("cv", gap=1),
            r"cv.gap = 1 purges times between time folds, which only the 'time' splitter has \(this "
            r"experiment uses 'stratified'\); remove cv.gap or set cv.splitter = 'time'",
        ),
        (with_("data", test="a.csv", test_size=0.2), r"at most one of data.test, data.split_column, data.test_size"),
        (with_("experiment", name="a b/c"), r"experiment.name: must be a plain name"),
    ],
)
def test_invalid_configs_name_key_and_value(raw, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(raw)


def test_overrides_are_parsed_as_toml_values():
    raw = {k: dict(v) for k, v in BASE.items()}
    apply_override(raw, "cv.n_splits=10")
    apply_override(raw, "model.params.learning_rate=0.02")
    apply_override(raw, "data.id=customer")  # not valid TOML: taken as text
    cfg = validate_config(raw)
    assert cfg.cv.n_splits == 10 and cfg.model.params["learning_rate"] == 0.02 and cfg.data.id == "customer"


def test_an_override_with_nothing_after_the_equals_sign_removes_the_key():
    raw = {k: dict(v) for k, v in BASE.items()}
    apply_override(raw, "cv.n_splits=10")
    apply_override(raw, "cv.n_splits=")
    apply_override(raw, "cv.seed=7")
    apply_override(raw, "cv.seed= ")  # blanks after the = are nothing too
    apply_override(raw, "cv.not_there=")  # removing what is absent is no error
    cfg = validate_config(raw)
    assert "n_splits" not in raw["cv"] and cfg.cv.n_splits == 5 and cfg.cv.seed == 42
    apply_override(raw, 'data.id=""')  # an empty text is still a value
    assert raw["data"]["id"] == ""


@pytest.mark.parametrize("item", ["cv.n_splits", "=3", ""])
def test_malformed_override_is_refused(item):
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        apply_override({}, item)


def test_resolved_defaults_and_stable_hash(tmp_path):
    cfg = validate_config(with_("cv", group="g"))
    assert cfg.splitter == "stratified_group" and cfg.metric == "auc"
    reordered = validate_config({"data": BASE["data"], "cv": {"group": "g"}, "experiment": BASE["experiment"]})
    assert cfg.hash() == reordered.hash()
    assert cfg.hash() != validate_config(with_("cv", group="g", seed=1)).hash()
    with pytest.raises(ValidationError, match="frozen"):  # configs are passed down, never mutated
        cfg.cv.n_splits = 3


def test_cli_reports_config_errors_with_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[experiment]\nname = "x"\n[data]\ntrain = "t.csv"\ntarget = "y"\ntask = "binary"\n[cv]\nseeds = 1\n'
    )
    assert main(["train", "--config", str(path)]) == 2
    assert "unknown key 'cv.seeds'; did you mean 'cv.seed'?" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    (tmp_path / "broken.toml").write_text("[experiment\n")
    assert main(["train", "--config", str(tmp_path / "broken.toml")]) == 2
    assert main(["train"]) == 2  # argparse usage error


def test_shipped_configs_are_valid():
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        load_config(path)


def test_unknown_key_in_an_optional_section_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'tune.n_trial'; did you mean 'tune.n_trials'\?"):
        validate_config({**BASE, "tune": {"n_trial": 5}})


def test_overrides_can_switch_a_monthly_label_to_days():
    """The label takes months or days, not both: switching from the command line removes months."""
    both = ["features.label.days=9"]
    with pytest.raises(ConfigError, match="give months or days, not both"):
        load_config(ROOT / "configs" / "retail.toml", both)
    cfg = load_config(ROOT / "configs" / "retail.toml", [*both, "features.label.months="])
    assert cfg.features.label.window.n == 9 and cfg.features.label.window.unit == "days"
