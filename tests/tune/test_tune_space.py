"""The tuning search space from the config: defaults, overrides, fixed values, the first trial, bad input."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline.config import validate_config
from pipeline.core.errors import ConfigError
from pipeline.tune.space import DEFAULT_SPACE, build_space


def config(tune: dict | None = None, params: dict | None = None):
    raw = {
        "experiment": {"name": "x"},
        "data": {"train": "sklearn:breast_cancer", "target": "target", "task": "binary"},
        "model": {"params": params or {"learning_rate": 0.05}},
    }
    if tune is not None:
        raw["tune"] = tune
    return validate_config(raw)


def test_default_space_is_the_seeds_and_the_first_trial_is_the_current_parameters():
    space = build_space(config(params={"learning_rate": 0.05, "num_leaves": 63, "colsample_bytree": 0.7}))
    assert set(space.distributions) == set(DEFAULT_SPACE)
    assert space.distributions["num_leaves"] == IntDistribution(2, 256)
    assert space.distributions["lambda_l1"] == FloatDistribution(1e-8, 10.0, log=True)
    assert space.fixed == {"learning_rate": 0.05}
    # the model's own values (aliases resolved), else LightGBM's defaults, projected into the space
    assert space.default_trial["num_leaves"] == 63 and space.default_trial["feature_fraction"] == 0.7
    assert space.default_trial["max_bin"] == 255 and space.default_trial["min_data_in_leaf"] == 20
    # bagging_freq 0 with bagging_fraction 1 is the same model as freq 1; 0 cannot be on a log scale
    assert space.default_trial["lambda_l1"] == 1e-8 and space.default_trial["bagging_freq"] == 1
    assert [n.split(":")[0] for n in space.default_notes] == ["lambda_l1", "lambda_l2"]
    for name, value in space.default_trial.items():
        assert space.distributions[name]._contains(space.distributions[name].to_internal_repr(value))


def test_overrides_fixed_values_extra_parameters_and_learning_rate():
    space = build_space(
        config(
            {
                "learning_rate": 0.1,
                "search_space": {
                    "num_leaves": {"high": 64, "log": True},
                    "max_depth": {"low": 3, "high": 12},
                    "boosting": {"choices": ["gbdt", "dart"]},
                    "min_gain_to_split": {"low": 0, "high": 1.5},
                },
                "fixed": {"bagging_freq": 1, "reg_alpha": 0.5},
            }
        )
    )
    assert space.distributions["num_leaves"] == IntDistribution(2, 64, log=True)
    assert space.distributions["max_depth"] == IntDistribution(3, 12)
    assert space.distributions["boosting"] == CategoricalDistribution(["gbdt", "dart"])
    assert space.distributions["min_gain_to_split"] == FloatDistribution(0.0, 1.5)
    assert "bagging_freq" not in space.distributions and "lambda_l1" not in space.distributions
    assert space.fixed == {"bagging_freq": 1, "lambda_l1": 0.5, "learning_rate": 0.1}
    assert space.default_trial["max_depth"] == 12  # LightGBM's -1 (no limit) becomes the deepest allowed
    assert space.trial_params({"num_leaves": 8})["learning_rate"] == 0.1


def test_default_ranges_widen_to_hold_the_current_values_but_overrides_do_not():
    params = {"learning_rate": 0.05, "min_data_in_leaf": 50, "max_bin": 63, "bagging_fraction": 0.8}
    space = build_space(config(params=params))
    assert space.distributions["min_data_in_leaf"] == IntDistribution(10, 50)
    assert space.distributions["max_bin"] == IntDistribution(63, 255, step=32)  # still on the 32-step grid
    assert space.default_trial["min_data_in_leaf"] == 50 and space.default_trial["max_bin"] == 63
    assert space.default_trial["bagging_freq"] == 0 == space.distributions["bagging_freq"].low  # bagging stays off
    assert any(
        n.startswith("min_data_in_leaf: range widened from int 10..40 to int 10..50") for n in space.default_notes
    )
    narrowed = build_space(config({"search_space": {"min_data_in_leaf": {"high": 30}}}, params=params))
    assert narrowed.distributions["min_data_in_leaf"] == IntDistribution(10, 30)
    assert narrowed.default_trial["min_data_in_leaf"] == 30  # the user's range is kept; the value moves


def test_only_the_given_parameters_without_the_default_space():
    space = build_space(config({"default_space": False, "search_space": {"num_leaves": {"low": 4, "high": 16}}}))
    assert list(space.distributions) == ["num_leaves"] and space.default_trial == {"num_leaves": 16}


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        (
            {"search_space": {"num_leaves": {"low": 300}}},
            r"num_leaves: low must be below high \(got low=300, high=256\)",
        ),
        ({"search_space": {"lambda_l1": {"low": 0}}}, r"lambda_l1: a log scale needs low > 0"),
        ({"search_space": {"num_leaves": {"low": 2.5}}}, r"num_leaves is an int parameter"),
        (
            {"search_space": {"max_bin": {"high": 300}}},
            r"max_bin: high - low \(173\) must be a multiple of step \(32\)",
        ),
        ({"search_space": {"max_depth": {"low": 3}}}, r"tune.search_space.max_depth needs low and high \(or choices\)"),
        (
            {"search_space": {"learning_rate": {"low": 0.01, "high": 0.3}}},
            r"\['learning_rate'\], which tuning never sets",
        ),
        ({"fixed": {"num_threads": 4}}, r"\['num_threads'\], which tuning never sets"),
        ({"default_space": False}, r"the tune search space is empty"),
    ],
)
def test_bad_search_space_is_refused_with_the_fix(tune, message):
    with pytest.raises(ConfigError, match=message):
        build_space(config(tune))


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"n_trials": 0}, r"tune.n_trials: Input should be greater than or equal to 1"),
        ({"pruner": "hyperband"}, r"tune.pruner: Input should be 'median', 'halving' or 'none'"),
        ({"search_space": {"num_leaves": {"choices": [8, 16], "low": 2}}}, r"give either choices or a numeric range"),
        ({"n_trails": 5}, r"unknown key 'tune.n_trails'"),
        ({"study_name": "../x"}, r"tune.study_name: must be a plain name"),
    ],
)
def test_bad_tune_section_is_refused_by_the_config(tune, message):
    with pytest.raises(ConfigError, match=message):
        config(tune)
