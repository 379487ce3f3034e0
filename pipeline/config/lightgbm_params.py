"""LightGBM's parameters, checked once when the config is validated (and when tuned params are read).

Names are checked against LightGBM's own table of parameters and aliases (its C API, so it follows the
installed version); keys gbpipe sets itself, or that LightGBM reads only in its own CLI, are refused with
the config key to use instead; values must be finite and the objective must fit the task; LightGBM checks
the rest itself on a tiny in-memory Dataset, so its refusal arrives as a ConfigError, not as a traceback
from a half-written run folder. Nothing here imports LightGBM until a config actually has params.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import ConfigError
from pipeline.core.metrics import lgb_metric

if TYPE_CHECKING:
    from .sections import EnsembleSection, TuneSection

DOCS = "https://lightgbm.readthedocs.io/en/stable/Parameters.html"

# Set by gbpipe from its own keys: in params these would be silently overridden (metric, num_threads,
# num_class, categorical_feature) or would silently override the key (num_iterations, early_stopping_round
# win over the arguments lgb.train is given), so the config would not say what was trained.
OWNED = {
    "num_iterations": (
        "LightGBM would take it over model.num_boost_round",
        "set model.num_boost_round instead, or an ensemble member's own num_boost_round",
    ),
    "early_stopping_round": (
        "LightGBM would add a second early stopping beside gbpipe's",
        "set model.early_stopping_rounds instead",
    ),
    "num_threads": ("gbpipe overwrites it with model.num_threads", "set model.num_threads instead"),
    "metric": ("gbpipe overwrites it with the LightGBM metric of model.metric", "set model.metric instead"),
    "num_class": ("gbpipe counts the classes of data.target", "remove it"),
    "categorical_feature": ("gbpipe passes the columns of data.categorical over it", "set data.categorical instead"),
}
# Read only by LightGBM's command-line program or when it loads a text file itself ("can be used only in
# CLI version" in its docs), or only when predicting: gbpipe hands LightGBM the table in memory and
# predicts at each fold's best iteration itself, so in params these would do nothing.
CLI_ONLY = (
    "config", "task", "data", "valid", "input_model", "output_model", "output_result", "save_binary",
    "convert_model", "convert_model_language", "snapshot_freq", "metric_freq", "is_provide_training_metric",
    "saved_feature_importance_type", "header", "label_column", "weight_column", "group_column", "ignore_column",
    "two_round", "precise_float_parser", "parser_config_file", "num_iteration_predict", "start_iteration_predict",
    "predict_raw_score", "predict_leaf_index", "predict_contrib", "predict_disable_shape_check",
    "pred_early_stop", "pred_early_stop_freq", "pred_early_stop_margin",
)  # fmt: skip
# Sized by the number of features or classes, or naming files: the tiny probe Dataset cannot judge them,
# so LightGBM checks them when the real table is trained.
NOT_PROBED = (
    "monotone_constraints", "max_bin_by_feature", "feature_contri", "interaction_constraints", "auc_mu_weights",
    "cegb_penalty_feature_lazy", "cegb_penalty_feature_coupled", "forcedsplits_filename", "forcedbins_filename",
)  # fmt: skip
# LightGBM's objectives (and its spellings of them) whose predictions gbpipe scores correctly per task.
OBJECTIVES = {
    "binary": ("binary", "cross_entropy", "xentropy"),
    "multiclass": ("multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"),
    "regression": (
        "regression", "regression_l2", "l2", "mean_squared_error", "mse", "l2_root", "root_mean_squared_error",
        "rmse", "regression_l1", "l1", "mean_absolute_error", "mae", "huber", "fair", "poisson", "quantile",
        "mape", "mean_absolute_percentage_error", "gamma", "tweedie",
    ),
}  # fmt: skip


@functools.cache
def primary_names() -> dict[str, str]:
    """Every LightGBM parameter name and alias -> its primary name, from LightGBM's own table."""
    from lightgbm.basic import _ConfigAliases  # wraps LGBM_DumpParamAliases, the library's own list

    table = _ConfigAliases._get_all_param_aliases()
    return {alias: primary for primary, aliases in table.items() for alias in aliases}


def primary(name: str) -> str:
    return primary_names().get(name, name)


def merge_params(base: Mapping[str, Any], *sources: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by each source in turn, a later value winning per parameter whatever alias spells it.

    A plain dict merge keeps both `learning_rate` and `eta`, and LightGBM then always takes the primary
    name, so a user's alias would lose silently to a default. A parameter already present keeps its key (and
    place); one a source adds is named by its primary name, so a later plain merge (a tuning trial's
    params) replaces it instead of sitting beside it.
    """
    merged = dict(base)
    keys = {primary(key): key for key in merged}  # primary name -> the key holding it in merged
    for source in sources:
        for key, value in source.items():
            merged[keys.setdefault(primary(key), primary(key))] = value
    return merged


DEFAULT_PARAMS = {"learning_rate": 0.05, "num_leaves": 31, "verbose": -1, "deterministic": True, "force_col_wise": True}
OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}


def task_params(task: str, metric: str, params: Mapping[str, Any], num_class: int, seed: int) -> dict[str, Any]:
    """gbpipe's defaults, then the user's params, then what the task fixes (metric, classes); the engine adds
    the thread count. The one resolution training and the check below both use."""
    # Merged per parameter, not per spelling: a user's `eta` must replace the default learning_rate, which
    # LightGBM would otherwise prefer as the primary name.
    resolved = merge_params(DEFAULT_PARAMS, {"objective": OBJECTIVE[task], "seed": seed}, params)
    resolved["metric"] = lgb_metric(task, metric)[0]
    if "force_row_wise" in params:
        resolved.pop("force_col_wise", None)
    if task == "multiclass":
        resolved["num_class"] = num_class
    return resolved


def check_config(
    task: str,
    metric: str,
    model_params: Mapping[str, Any],
    ensemble: EnsembleSection | None,
    tune: TuneSection | None,
) -> None:
    """Raise ValueError listing every problem of a config's LightGBM parameters (for the Config validator)."""
    problems: list[str] = []
    model = dict(model_params)
    if model:
        problems += params_problems(model, "model.params.{key}", task, metric)
    members = ensemble.members if ensemble and not problems else ()  # trained over model.params
    for i, member in enumerate(members):
        if member.family == "lightgbm" and member.params:
            where = f"ensemble.members[{i}].params.{{key}} (member {member.name!r})"
            problems += params_problems(dict(member.params), where, task, metric, base=model)
    if tune is not None:
        problems += tune_problems(tune)
    if problems:
        raise ValueError("\n  ".join(problems))


def check_more_params(
    params: Mapping[str, Any], where: str, task: str, metric: str, model_params: Mapping[str, Any]
) -> None:
    """ConfigError for params read after validation (`train --params FILE`, a member's params_file), checked
    as they are used: over model.params. `where` names a key, e.g. "{key} in --params file best.json"."""
    problems = params_problems(dict(params), where, task, metric, base=dict(model_params))
    if problems:
        raise ConfigError("invalid LightGBM parameters:\n  " + "\n  ".join(problems))


def params_problems(
    params: dict[str, Any], where: str, task: str, metric: str, base: dict[str, Any] | None = None
) -> list[str]:
    """What is wrong with `params` (trained over `base`): names first, then values, then LightGBM's verdict."""
    problems = name_problems(params, where)
    if problems:
        return problems  # values of unknown or refused names mean nothing to LightGBM
    problems = finite_problems(params, where) + objective_problems(params, where, task)
    if problems:
        return problems
    return lightgbm_problems(params, where, task, metric, base or {})


def name_problems(params: Mapping[str, Any], where: str, owned: bool = True) -> list[str]:
    """Unknown names (with the nearest one), gbpipe's own keys (with the key to use) and CLI-only names."""
    names = primary_names()
    problems = []
    for key in params:
        name = names.get(key)
        shown = _at(where, key)
        if name is None:
            problems.append(f"{shown} is not a LightGBM parameter: {_nearest(key)}")
        elif owned and name in OWNED:
            reason, fix = OWNED[name]
            problems.append(f"{shown} = {params[key]!r}: gbpipe sets {name} itself ({reason}); {fix}")
        elif name in CLI_ONLY:
            problems.append(
                f"{shown}: LightGBM reads {name} only in its own command-line program or when predicting; "
                "gbpipe passes the table in memory and predicts itself, so it would be ignored; remove it"
            )
    return problems


def _nearest(key: str) -> str:
    """The rule, and the nearest real name (or where LightGBM lists them)."""
    rule = "LightGBM takes only its own parameter names and aliases and silently ignores any other"
    match = difflib.get_close_matches(key, list(primary_names()), n=1, cutoff=0.6)
    if not match:
        return f"{rule}; see {DOCS}"
    owned = OWNED.get(primary(match[0]))
    return f"{rule}; did you mean {match[0]}?" + (f" (gbpipe sets that one: {owned[1]})" if owned else "")


def _at(where: str, key: str) -> str:
    """The config path of one key: `where` with {key} filled in (not str.format: a file path may hold braces)."""
    return where.replace("{key}", key)


def finite_problems(params: Mapping[str, Any], where: str) -> list[str]:
    """nan and inf reach LightGBM as text it may misread, and the run folder's TOML cannot hold them."""
    return [
        f"{_at(where, key)} = {value!r}: values must be finite numbers (nan and inf are refused); "
        "give a finite value or remove the key"
        for key, value in params.items()
        if not _finite(value)
    ]


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(map(_finite, value))
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    return True


def objective_problems(params: Mapping[str, Any], where: str, task: str) -> list[str]:
    """gbpipe reads a binary model's output as probabilities, a multiclass one's raw scores through a
    softmax, a regression's as values: another objective would train and be scored as if it fitted."""
    problems = []
    for key, value in params.items():
        if primary(key) == "objective" and str(value).lower() not in OBJECTIVES[task]:
            problems.append(
                f"{_at(where, key)} = {value!r} does not fit data.task = {task!r}: the objective must be "
                f"one of {', '.join(OBJECTIVES[task])}; change it or remove it (default: the task's own)"
            )
    return problems


def tune_problems(tune: TuneSection) -> list[str]:
    """The search space and the fixed params name LightGBM parameters; which of them tuning may not set
    is build_space's rule (pipeline/tune/space.py), applied when the space is built."""
    problems = name_problems(tune.search_space, "tune.search_space.{key}", owned=False)
    problems += name_problems(tune.fixed, "tune.fixed.{key}", owned=False)
    problems += finite_problems(tune.fixed, "tune.fixed.{key}")
    bounds = {key: entry.model_dump(exclude_none=True) for key, entry in tune.search_space.items()}
    return problems + finite_problems(bounds, "tune.search_space.{key}")


def lightgbm_problems(params: dict[str, Any], where: str, task: str, metric: str, base: dict[str, Any]) -> list[str]:
    """LightGBM's own verdict on the values, one problem per culprit: the key named by its message, else
    the key whose removal satisfies it; keys are set aside one by one so every bad value is reported."""
    problems: list[str] = []
    left = {k: v for k, v in params.items() if primary(k) not in NOT_PROBED}
    base = {k: v for k, v in base.items() if primary(k) not in NOT_PROBED}
    while (message := refusal(task, metric, merge_params(base, left))) is not None:
        culprit = _culprit(message, left, task, metric, base)
        if culprit is None:
            shown = ", ".join(_at(where, k) for k in left)
            problems.append(f"LightGBM refuses {shown} together: {_requirement(message)}; change one of them")
            break
        problems.append(f"{_at(where, culprit)} = {left[culprit]!r}: {_requirement(message)}")
        del left[culprit]
    return problems


def _culprit(message: str, params: dict[str, Any], task: str, metric: str, base: dict[str, Any]) -> str | None:
    named = [k for k in params if re.search(rf"\b({re.escape(k)}|{re.escape(primary(k))})\b", message)]
    if len(named) == 1:
        return named[0]
    for key in params:
        rest = {k: v for k, v in params.items() if k != key}
        if refusal(task, metric, merge_params(base, rest)) is None:
            return key
    return None


def _requirement(message: str) -> str:
    """LightGBM's message, rid of its source location; its bound checks read as the rule they enforce."""
    message = re.sub(r"\s+at \S+, line \d+\s*\.?\s*$", "", message.strip())
    check = re.fullmatch(r"Check failed: \((\w+)\) (\S+) \((.+)\)", message)
    if check:
        return f"LightGBM requires {check[1]} {check[2]} {check[3]}"
    return f"LightGBM refuses it ({message.removeprefix('Check failed: ')})"


def refusal(task: str, metric: str, params: dict[str, Any]) -> str | None:
    """LightGBM's error for these params on a tiny Dataset of the task, or None: a millisecond, once."""
    key = json.dumps([task, metric, params], sort_keys=True, default=repr)
    return _refusal(key)


@functools.lru_cache(maxsize=256)
def _refusal(key: str) -> str | None:
    import lightgbm as lgb
    import numpy as np

    task, metric, params = json.loads(key)
    n_class = 3 if task == "multiclass" else 1
    resolved = merge_params(task_params(task, metric, params, n_class, seed=0), {"verbosity": -1, "num_threads": 1})
    rows = np.arange(60)
    X = np.column_stack([rows % 7, rows % 5]).astype("float64")
    # Labels every objective of the task accepts: classes 0..k-1, positive values for poisson and gamma.
    y = rows % 2 if task == "binary" else rows % n_class if task == "multiclass" else 1.0 + rows % 4
    try:
        with _quiet_lightgbm():
            lgb.Booster(resolved, lgb.Dataset(X, label=y))
    except (lgb.basic.LightGBMError, TypeError, ValueError) as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def _quiet_lightgbm() -> Iterator[None]:
    """LightGBM writes a refusal to stderr ("[LightGBM] [Fatal] ...") from C++ before raising it, and logs
    warnings through its Python logger; the ConfigError says it once, so both are muted for the probe."""
    from lightgbm import basic

    previous = basic._LOGGER
    basic._LOGGER = _Silent()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        basic._LOGGER = previous


class _Silent:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
