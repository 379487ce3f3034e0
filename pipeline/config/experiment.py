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
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from features.experiment_checks import check_experiment, label_gap
from features.spec import FeaturesSection
from pipeline.compute.cluster import check_address
from pipeline.core.errors import ConfigError
from pipeline.core.metrics import DEFAULT_METRIC, METRICS
from pipeline.core.names import check_name

from .lightgbm_params import check_config as check_lightgbm_params
from .sections import (
    DriftSection,
    EnsembleSection,
    ImportanceSection,
    PlainName,
    Section,
    SelectSection,
    TuneSection,
)

Task = Literal["binary", "multiclass", "regression"]


class ExperimentSection(Section):
    name: PlainName
    runs_dir: str = "runs"
    description: str = ""


SKLEARN_PREFIX = "sklearn:"  # data.train = "sklearn:<name>": a dataset bundled with scikit-learn
ROW_ID = "row_id"  # the id of a table without data.id: the row's position


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
    # Carried from the input into every prediction file next to the id (e.g. the entity and the cutoff of a
    # feature table), so predictions say whose they are; never features.
    keep: tuple[str, ...] = ()
    categorical: tuple[str, ...] | None = None
    # Categories seen in fewer training rows are grouped with missing: LightGBM's categorical splits
    # overfit rare ones (retail's last product code: bench/README.md, "Value features").
    min_category_rows: int = Field(default=1, ge=1)
    positive_label: str | int | None = None
    csv_sep: str = ","
    # How `gbpipe train` and `gbpipe importance` read a parquet training table: "whole" (a pandas table and its
    # float64 matrix), in Arrow batches of this many rows (binned by LightGBM as they come, never held whole),
    # or "auto": in batches of AUTO_BATCH_ROWS once the file has more than AUTO_STREAM_ROWS rows.
    batch_rows: Literal["auto", "whole"] | Annotated[int, Field(ge=100)] = "auto"

    @model_validator(mode="after")
    def _one_test_source(self) -> DataSection:
        given = [k for k in ("test", "split_column", "test_size") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of data.test, data.split_column, data.test_size; got {given}")
        return self

    @model_validator(mode="after")
    def _keep(self) -> DataSection:
        taken = [c for c in self.keep if c in ("pred", "label_pred", self.id or ROW_ID) or c.startswith("pred_")]
        if taken:
            raise ValueError(
                f"data.keep: {taken} would collide with the id or a prediction column of the output "
                "(pred, pred_<class>, label_pred); keep other columns"
            )
        chosen = [c for c in self.keep if self.features is not None and c in self.features]
        if chosen:
            raise ValueError(
                f"data.keep: {chosen} are also in data.features; a kept column is carried into the "
                "predictions, never a feature: remove it from one of the two"
            )
        if len(set(self.keep)) < len(self.keep):
            raise ValueError(f"data.keep repeats a column: {list(self.keep)}")
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
    # (pipeline/train/backtest.py). 0 = off.
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


def _cluster_address(address: str) -> str:
    return check_address(address, "compute.cluster")


class ComputeSection(Section):
    # A Dask scheduler (tcp://host:8786, tls://...) or local:N; absent: in-process. --cluster overrides it.
    cluster: Annotated[str, AfterValidator(_cluster_address)] | None = None


class Config(Section):
    experiment: ExperimentSection
    data: DataSection
    cv: CVSection = CVSection()
    model: ModelSection = ModelSection()
    ensemble: EnsembleSection | None = None
    tune: TuneSection | None = None
    importance: ImportanceSection | None = None
    select: SelectSection | None = None
    drift: DriftSection | None = None  # `gbpipe drift` and predict's drift check; defaults when absent
    features: FeaturesSection | None = None  # point-in-time features built from an event table (issue 4)
    compute: ComputeSection | None = None  # where the work runs; not part of the config hash (same results)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        task, cv = self.data.task, self.cv
        metric = self.model.metric or DEFAULT_METRIC[task]
        if metric not in METRICS[task]:
            raise ValueError(
                f"model.metric {metric!r} is not available for task {task!r}; choose one of {', '.join(METRICS[task])}"
            )
        if cv.splitter in ("group", "stratified_group") and not cv.group:
            raise ValueError(f"cv.splitter {cv.splitter!r} needs cv.group, the column whose rows stay together")
        if cv.splitter == "time" and not cv.time:
            raise ValueError("cv.splitter 'time' needs cv.time, the column that orders rows in time")
        if task == "regression" and cv.splitter in ("stratified", "stratified_group"):
            raise ValueError(
                f"cv.splitter {cv.splitter!r} stratifies on the target, which regression cannot; use 'kfold' or 'group'"
            )
        if cv.backtest and self.features is None:
            raise ValueError(
                f"cv.backtest = {cv.backtest} replays training cutoffs, which only a [features] "
                "experiment has; remove cv.backtest or add a [features] section"
            )
        if self.features is not None:
            check_experiment(self.features, self.data, cv)
        elif self.data.train is None:
            raise ValueError("data.train is required: the path of the training table (or a [features] section)")
        if cv.backtest and self.splitter == "time":
            raise ValueError(
                f"cv.backtest = {cv.backtest} replays cutoffs with the experiment's K-fold folds, which "
                "the 'time' splitter's blocks of cutoffs cannot give; set cv.backtest = 0, or use the "
                "stratified_group splitter"
            )
        if cv.gap is not None and self.splitter != "time":
            raise ValueError(
                f"cv.gap = {cv.gap} purges times between time folds, which only the 'time' splitter "
                f"has (this experiment uses {self.splitter!r}); remove cv.gap or set cv.splitter = 'time'"
            )
        needed = self._label_gap() if self.splitter == "time" and cv.gap is not None else 0
        if cv.gap is not None and cv.gap < needed:
            label, spacing = self.features.label.window, self.features.cutoffs.spacing
            raise ValueError(
                f"cv.gap = {cv.gap} is too small for {label.words} labels at cutoffs {spacing.n} "
                f"{spacing.unit[:-1]}(s) apart: a fold would train on the {needed - cv.gap} cutoff(s) "
                f"just before the ones it validates, whose labels are not known yet then; set "
                f"cv.gap = {needed} or more, or leave it out"
            )
        return self

    @model_validator(mode="after")
    def _lightgbm_params(self) -> Config:
        """Names, values and objective of every LightGBM params of the config (lightgbm_params.py)."""
        check_lightgbm_params(self.data.task, self.metric, self.model.params, self.ensemble, self.tune)
        return self

    @property
    def metric(self) -> str:
        """The metric used for early stopping and for comparing runs."""
        return self.model.metric or DEFAULT_METRIC[self.data.task]

    def _label_gap(self) -> int:
        """Cutoffs a label window spans past the next cutoff: the time folds' smallest honest gap."""
        if self.features is None:
            return 0
        return label_gap(self.features)

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
        """The settings that make a run's results; where it runs ([compute]) is not one of them, so neither the
        hash nor the run folder's config.toml holds it, and the run reads back the same wherever it ran."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"compute"})

    def hash(self) -> str:
        """sha256 of the resolved config, stable across key order."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), name_from_file: bool = False) -> Config:
    """Read a TOML experiment file, apply `key.path=value` overrides and validate. With `name_from_file`, a file
    without experiment.name (`gbpipe auto` needs only [data]) is named after the file's stem."""
    path = Path(path)
    text = read_text(path, "config file", "list the experiments with `ls configs/`")
    raw = parse_toml(text, f"config file {path}")
    for item in overrides:
        apply_override(raw, item)
    experiment = raw.get("experiment")
    if name_from_file and (experiment is None or (isinstance(experiment, dict) and "name" not in experiment)):
        key = f"experiment.name (taken from the file name {path.name}, as [experiment] gives none)"
        raw["experiment"] = {**(experiment or {}), "name": check_name(path.stem, key)}
    return validate_config(raw, source=str(path))


def read_text(path: Path, what: str, missing: str) -> str:
    """A UTF-8 text file; ConfigError naming `what` and the path when it is missing (`missing` says what to do),
    unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found; {missing}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror}); give the path of a TOML file") from None


def parse_toml(text: str, where: str, invalid: str = "") -> dict[str, Any]:
    """TOML text as a dict; ConfigError naming `where`, followed by `invalid` (what to do) when given."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}" + (f"; {invalid}" if invalid else "")) from None


def validate_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a raw dict into a frozen Config, translating errors into one readable ConfigError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid config {source}:\n  " + "\n  ".join(validation_problems(exc))) from None


def validation_problems(exc: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One readable line per pydantic error (key, rule, value; the nearest key for an unknown one), for a
    document validated by `root` (default: the experiment config)."""
    return [_describe(err, root or Config) for err in exc.errors()]


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `--set a.b.c=value` override; the value is parsed as TOML, else taken as text. Nothing after
    the `=` removes the key (back to its default), which TOML itself cannot say: `--set features.label.days=7
    --set features.label.months=` turns a monthly label into a weekly one."""
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
    if text.strip():
        node[parts[-1]] = value
    else:
        node.pop(parts[-1], None)


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


def _describe(err: dict[str, Any], root: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        hint = _nearest_key(err["loc"], root)
        return f"unknown key {loc!r}" + (f"; did you mean {hint!r}?" if hint else "")
    if err["type"] == "missing":
        return f"missing required key {loc!r}"
    value = err.get("input")
    where = f"{loc}: " if loc else ""
    msg = err["msg"].removeprefix("Value error, ")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{where}{msg}{shown}"


# Names users bring from LightGBM, scikit-learn or XGBoost that string similarity cannot relate to ours.
ALIASES = {
    "n_fold": "n_splits",
    "n_folds": "n_splits",
    "nfold": "n_splits",
    "folds": "n_splits",
    "num_rounds": "num_boost_round",
    "n_estimators": "num_boost_round",
    "num_iterations": "num_boost_round",
    "early_stopping_round": "early_stopping_rounds",
    "random_state": "seed",
    "random_seed": "seed",
    "label": "target",
    "objective": "task",
}


def _nearest_key(loc: tuple[Any, ...], root: type[BaseModel]) -> str | None:
    model = root
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list of sections (`members[2]`): the same model
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        # Optional sections (`tune: TuneSection | None`) suggest from the section inside the union.
        candidates = typing.get_args(annotation) or (annotation,)
        sections = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            return None
        model = sections[0]
    alias = ALIASES.get(str(loc[-1]))
    matches = (
        [alias]
        if alias in model.model_fields
        else difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.5)
    )
    if not matches:
        return None
    return ".".join([*map(str, loc[:-1]), matches[0]])
