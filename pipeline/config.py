"""Experiment configuration: TOML in, validated frozen objects out.

The config is read once at the edge (the CLI), validated here, and passed down explicitly.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.spec import FeaturesSection, check_experiment

from .errors import ConfigError

Task = Literal["binary", "multiclass", "regression"]

METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "logloss", "accuracy", "f1"),
    "multiclass": ("logloss", "accuracy", "f1_macro"),
    "regression": ("rmse", "mae", "mse", "r2"),
}
DEFAULT_METRIC = {"binary": "auc", "multiclass": "logloss", "regression": "rmse"}


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ExperimentSection(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    runs_dir: str = "runs"
    description: str = ""


class DataSection(Section):
    train: str | None = None
    test: str | None = None
    split_column: str | None = None
    train_value: str = "train"
    test_value: str = "test"
    test_size: float | None = Field(default=None, gt=0.0, lt=1.0)
    target: str
    task: Task
    id: str | None = None
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    categorical: tuple[str, ...] | None = None
    positive_label: str | int | None = None
    csv_sep: str = ","

    @model_validator(mode="after")
    def _one_test_source(self) -> DataSection:
        given = [k for k in ("test", "split_column", "test_size") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of data.test, data.split_column, data.test_size; got {given}")
        return self


class CVSection(Section):
    splitter: Literal["auto", "stratified", "kfold", "group", "stratified_group", "time"] = "auto"
    n_splits: int = Field(default=5, ge=2, le=100)
    n_repeats: int = Field(default=1, ge=1, le=20)
    seed: int = 42
    group: str | None = None
    time: str | None = None
    # Forward backtest of a [features] experiment: the last N training cutoffs, each scored by the same
    # folds trained only on rows whose label windows ended by it, beside its OOF score
    # (pipeline/backtest.py). 0 = off.
    backtest: int = Field(default=0, ge=0, le=24)
    # Time splitter only: distinct times purged between a fold's training rows and its validation block, so
    # no training label reaches into the validated period. Default: 0, or for a [features] experiment the
    # cutoffs its label window spans past the next one (0 for one-month labels at monthly cutoffs).
    gap: int | None = Field(default=None, ge=0, le=120)


class ModelSection(Section):
    params: dict[str, Any] = Field(default_factory=dict)
    num_boost_round: int = Field(default=10_000, ge=1)
    early_stopping_rounds: int | None = Field(default=100, ge=1)
    early_stopping: Literal["fold", "inner"] = "fold"
    inner_valid_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    metric: str | None = None
    num_threads: int = Field(default=0, ge=0)
    # Folds training at once in threads, one LightGBM thread each, within num_threads; results are identical
    # either way. 0 = auto: one fold per thread (bench/bench_cv.py measured this faster than one fold at a
    # time with all threads on 2 cores); 1 = one fold after another.
    fold_workers: int = Field(default=0, ge=0, le=64)


COMBINERS = ("hard_vote", "soft_vote", "greedy", "optimized", "stack")


class EnsembleMember(Section):
    """One ensemble member: a model family trained on the experiment's saved folds."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    family: Literal["lightgbm", "hist_gradient_boosting", "extra_trees", "random_forest", "logistic", "ridge",
                    "xgboost", "catboost"]
    params: dict[str, Any] = Field(default_factory=dict)
    params_file: str | None = None  # JSON of tuned params (e.g. tune's best_params.json), under `params`
    num_boost_round: int | None = Field(default=None, ge=1)  # boosting families; default model.num_boost_round


class EnsembleSection(Section):
    """`gbpipe ensemble`: members trained on the shared folds, combiners fitted on their OOF predictions."""

    members: tuple[EnsembleMember, ...] = Field(min_length=1)
    combiners: tuple[Literal["hard_vote", "soft_vote", "greedy", "optimized", "stack"], ...] = (
        "soft_vote", "greedy", "optimized", "stack")
    vote_weights: dict[str, float] | None = None
    blend_on: Literal["proba", "rank"] = "proba"
    greedy_iterations: int = Field(default=50, ge=1, le=1000)
    stack_model: Literal["linear", "lightgbm"] = "linear"
    stack_features: tuple[str, ...] = ()
    stack_regularization: float = Field(default=1.0, gt=0.0)
    stack_lgb_rounds: int = Field(default=200, ge=1, le=5000)
    bootstrap_n: int = Field(default=1000, ge=100, le=100_000)
    bootstrap_seed: int = 0
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    use: str = "recommended"
    cache: bool = True

    @model_validator(mode="after")
    def _names(self) -> EnsembleSection:
        names = [m.name for m in self.members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"ensemble.members: names must be unique; repeated: {dupes}")
        unknown = sorted(set(self.vote_weights or {}) - set(names))
        if unknown:
            raise ValueError(f"ensemble.vote_weights names {unknown}, which are not members; members are {names}")
        weights = list((self.vote_weights or {}).values())
        if weights and (min(weights) < 0 or sum(weights) <= 0):
            raise ValueError("ensemble.vote_weights must be non-negative with a positive sum")
        if len(set(self.combiners)) != len(self.combiners):
            raise ValueError(f"ensemble.combiners lists a combiner twice: {list(self.combiners)}")
        allowed = ("recommended", *COMBINERS, *names)
        if self.use not in allowed:
            raise ValueError(f"ensemble.use {self.use!r} must be 'recommended', a combiner or a member name: {allowed}")
        return self


class SearchParam(Section):
    """One tuned LightGBM parameter: a numeric range (optionally log or stepped) or a list of choices.

    Entries for a parameter of the default search space may give only what changes (e.g. `high`).
    """

    low: int | float | None = None
    high: int | float | None = None
    log: bool | None = None
    step: int | float | None = Field(default=None, gt=0)
    type: Literal["int", "float"] | None = None
    choices: tuple[str | int | float | bool, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParam:
        numeric = [k for k in ("low", "high", "log", "step", "type") if getattr(self, k) is not None]
        if self.choices is not None and numeric:
            raise ValueError(f"give either choices or a numeric range, not both (got choices and {numeric})")
        return self


class TuneSection(Section):
    """`gbpipe tune`: Optuna TPE search of LightGBM parameters on the K-fold OOF score."""

    n_trials: int = Field(default=50, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    seed: int = 42
    n_startup_trials: int = Field(default=10, ge=0)
    pruner: Literal["median", "halving", "none"] = "median"
    pruner_startup_trials: int = Field(default=5, ge=0)
    learning_rate: float | None = Field(default=None, gt=0)  # fixed during the search; default model's
    final_learning_rate: float | None = Field(default=None, gt=0)  # retrain the best trial at this rate
    default_space: bool = True  # start from the built-in search space (false: only search_space below)
    search_space: dict[str, SearchParam] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)  # parameters held fixed (removed from the space)
    study_name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]+$")
    workers: int = Field(default=1, ge=1)
    plots: bool = True


class ImportanceSection(Section):
    """`gbpipe importance`: permutation (per fold, seeded), gain/split and null importance of a run."""

    n_repeats: int = Field(default=5, ge=1, le=1000)  # shuffles per feature and fold
    seed: int = 0  # fold k of CV repeat r uses seed + 1000 * r + k
    n_jobs: int = Field(default=0, ge=0)  # prediction threads; 0 = all cores (never more)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)  # name -> columns permuted together
    group_patterns: dict[str, str] = Field(default_factory=dict)  # name -> regex over column names
    null_repeats: int = Field(default=5, ge=0, le=1000)  # target shuffles for null importance; 0 = skip
    null_num_boost_round: int = Field(default=300, ge=1)  # cap on rounds of each null refit
    plot_top: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _patterns_compile(self) -> ImportanceSection:
        import re

        for name, pattern in self.group_patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"importance.group_patterns.{name}: {pattern!r} is not a valid regex ({exc})") from None
        clash = sorted(set(self.groups) & set(self.group_patterns))
        if clash:
            raise ValueError(f"importance: group names {clash} are given both in groups and group_patterns")
        return self


class SelectSection(Section):
    """`gbpipe select`: filter, embedded and wrapper selection, each decision made inside the folds."""

    max_missing: float = Field(default=0.95, gt=0.0, le=1.0)  # drop columns with a larger missing share
    max_dominant: float = Field(default=0.999, gt=0.0, le=1.0)  # near-constant: share of the commonest value
    drop_duplicates: bool = True
    max_correlation: float | None = Field(default=0.98, gt=0.0, le=1.0)  # |Pearson| above: drop the weaker
    top_k: int | None = Field(default=None, ge=1)  # embedded: keep the k largest by gain
    min_gain_share: float | None = Field(default=None, ge=0.0, lt=1.0)  # embedded: share of total gain
    wrapper: Literal["none", "permutation", "null"] = "permutation"
    keep_rule: Literal["ci", "mean"] = "ci"  # permutation: lower CI bound > 0, or mean > 0
    alpha: float = Field(default=0.1, gt=0.0, lt=1.0)  # null wrapper: keep when p-value <= alpha
    null_repeats: int = Field(default=9, ge=1, le=1000)
    rfe_step: float | None = Field(default=None, gt=0.0, lt=1.0)  # also drop this share of the weakest per round
    max_rounds: int = Field(default=10, ge=1, le=1000)
    tolerance: float | None = Field(default=None, ge=0.0)  # allowed worsening; default one std error
    min_features: int = Field(default=1, ge=1)
    inner_splits: int = Field(default=3, ge=2, le=20)
    n_repeats: int = Field(default=3, ge=1, le=100)  # permutation shuffles inside selection
    num_boost_round: int | None = Field(default=None, ge=1)  # cap for selection fits; default model's
    confidence: float = Field(default=0.9, gt=0.5, lt=1.0)  # of the "ci" keep rule (t over inner folds)
    seed: int = 0


class Config(Section):
    experiment: ExperimentSection
    data: DataSection
    cv: CVSection = CVSection()
    model: ModelSection = ModelSection()
    ensemble: EnsembleSection | None = None
    tune: TuneSection | None = None
    importance: ImportanceSection | None = None
    select: SelectSection | None = None
    features: FeaturesSection | None = None  # point-in-time features built from an event table (issue 4)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        task, cv = self.data.task, self.cv
        metric = self.model.metric or DEFAULT_METRIC[task]
        if metric not in METRICS[task]:
            raise ValueError(f"model.metric {metric!r} is not available for task {task!r}; "
                             f"choose one of {', '.join(METRICS[task])}")
        if cv.splitter in ("group", "stratified_group") and not cv.group:
            raise ValueError(f"cv.splitter {cv.splitter!r} needs cv.group, the column whose rows stay together")
        if cv.splitter == "time" and not cv.time:
            raise ValueError("cv.splitter 'time' needs cv.time, the column that orders rows in time")
        if task == "regression" and cv.splitter in ("stratified", "stratified_group"):
            raise ValueError(f"cv.splitter {cv.splitter!r} stratifies on the target, which regression cannot; "
                             "use 'kfold' or 'group'")
        if cv.backtest and self.features is None:
            raise ValueError(f"cv.backtest = {cv.backtest} replays training cutoffs, which only a [features] "
                             "experiment has; remove cv.backtest or add a [features] section")
        if self.features is not None:
            check_experiment(self.features, self.data, cv)
        elif self.data.train is None:
            raise ValueError("data.train is required: the path of the training table (or a [features] section)")
        if cv.backtest and self.splitter == "time":
            raise ValueError(f"cv.backtest = {cv.backtest} replays cutoffs with the experiment's K-fold folds, which "
                             "the 'time' splitter's blocks of cutoffs cannot give; set cv.backtest = 0, or use the "
                             "stratified_group splitter")
        if cv.gap is not None and self.splitter != "time":
            raise ValueError(f"cv.gap = {cv.gap} purges times between time folds, which only the 'time' splitter "
                             f"has (this experiment uses {self.splitter!r}); remove cv.gap or set cv.splitter = 'time'")
        needed = self._label_gap()
        if self.splitter == "time" and cv.gap is not None and cv.gap < needed:
            raise ValueError(f"cv.gap = {cv.gap} is too small for {self.features.label.months}-month labels at cutoffs "
                             f"{self.features.cutoffs.every_months} month(s) apart: a fold would train on the "
                             f"{needed - cv.gap} cutoff(s) just before the ones it validates, whose labels are not "
                             f"known yet then; set cv.gap = {needed} or more, or leave it out")
        return self

    @property
    def metric(self) -> str:
        """The metric used for early stopping and for comparing runs."""
        return self.model.metric or DEFAULT_METRIC[self.data.task]

    def _label_gap(self) -> int:
        """Cutoffs a label window spans past the next cutoff: the time folds' smallest honest gap."""
        if self.features is None:
            return 0
        return -(-self.features.label.months // self.features.cutoffs.every_months) - 1

    @property
    def time_gap(self) -> int:
        """The time splitter's gap actually used (cv.gap, else the labels' smallest honest gap; 0 for others)."""
        if self.splitter != "time":
            return 0
        return self.cv.gap if self.cv.gap is not None else self._label_gap()

    @property
    def splitter(self) -> str:
        """The splitter actually used ('auto' resolved from task and group)."""
        if self.cv.splitter != "auto":
            return self.cv.splitter
        if self.cv.group:
            return "group" if self.data.task == "regression" else "stratified_group"
        return "kfold" if self.data.task == "regression" else "stratified"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def hash(self) -> str:
        """sha256 of the resolved config, stable across key order."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a TOML experiment file, apply `key.path=value` overrides and validate."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; list the experiments with `ls configs/`") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for item in overrides:
        apply_override(raw, item)
    return validate_config(raw, source=str(path))


def validate_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a raw dict into a frozen Config, translating errors into one readable ConfigError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise ConfigError(f"invalid config {source}:\n  " + "\n  ".join(lines)) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `--set a.b.c=value` override; the value is parsed as TOML, else taken as text."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r} must look like section.key=value, e.g. cv.n_splits=10")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
    node[parts[-1]] = value


def read_params_file(path: str | Path, what: str = "--params file") -> dict[str, Any]:
    """LightGBM (or member) parameters from JSON: a plain object, or best_params.json's {"params": {...}}."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from None
    params = doc.get("params", doc) if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object of parameters")
    return params


def dump_config_toml(config: Config) -> str:
    """The resolved config as TOML text (what the run folder keeps)."""
    import tomli_w

    return tomli_w.dumps(config.to_dict())


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        hint = _nearest_key(err["loc"])
        return f"unknown key {loc!r}" + (f"; did you mean {hint!r}?" if hint else "")
    if err["type"] == "missing":
        return f"missing required key {loc!r}"
    value = err.get("input")
    where = f"{loc}: " if loc else ""
    msg = err["msg"].removeprefix("Value error, ")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{where}{msg}{shown}"


# Names users bring from LightGBM, scikit-learn or XGBoost that string similarity cannot relate to ours.
ALIASES = {"n_fold": "n_splits", "n_folds": "n_splits", "nfold": "n_splits", "folds": "n_splits",
           "num_rounds": "num_boost_round", "n_estimators": "num_boost_round", "num_iterations": "num_boost_round",
           "early_stopping_round": "early_stopping_rounds", "random_state": "seed", "random_seed": "seed",
           "label": "target", "objective": "task"}


def _nearest_key(loc: tuple[Any, ...]) -> str | None:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        # Optional sections (`tune: TuneSection | None`) suggest from the section inside the union.
        candidates = typing.get_args(annotation) or (annotation,)
        sections = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            return None
        model = sections[0]
    alias = ALIASES.get(str(loc[-1]))
    matches = [alias] if alias in model.model_fields else difflib.get_close_matches(
        str(loc[-1]), list(model.model_fields), n=1, cutoff=0.5)
    if not matches:
        return None
    return ".".join([*map(str, loc[:-1]), matches[0]])
