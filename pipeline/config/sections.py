"""Settings of the stages that follow training: ensemble, tune, importance, select, drift.

Split from config.py to keep each module to one job; `Config` holds one of each (pipeline/config.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pipeline.core.names import name_problem


def _plain_name(name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


# Every config value that becomes a folder or file name (experiment, study, member) is one of these.
PlainName = Annotated[str, AfterValidator(_plain_name)]


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys rejected."""

    # nan/inf are no setting: refused here, once for every float key (TOML cannot even write them back).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


COMBINERS = ("hard_vote", "soft_vote", "greedy", "optimized", "stack")


class EnsembleMember(Section):
    """One ensemble member: a model family trained on the experiment's saved folds."""

    name: PlainName
    family: Literal[
        "lightgbm", "hist_gradient_boosting", "extra_trees", "random_forest", "logistic", "ridge", "xgboost", "catboost"
    ]
    params: dict[str, Any] = Field(default_factory=dict)
    params_file: str | None = None  # JSON of tuned params (e.g. tune's best_params.json), under `params`
    num_boost_round: int | None = Field(default=None, ge=1)  # boosting families; default model.num_boost_round


class EnsembleSection(Section):
    """`gbpipe ensemble`: members trained on the shared folds, combiners fitted on their OOF predictions."""

    members: tuple[EnsembleMember, ...] = Field(min_length=1)
    combiners: tuple[Literal["hard_vote", "soft_vote", "greedy", "optimized", "stack"], ...] = (
        "soft_vote",
        "greedy",
        "optimized",
        "stack",
    )
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
        dupes = repeated(names)
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
    study_name: PlainName = "default"
    workers: int = Field(default=1, ge=1)
    # Trials proposed from the same history before any is told: on a cluster their folds train at once. It
    # shapes the search, so it is a setting of the experiment, never taken from the cluster's size.
    batch_trials: int = Field(default=1, ge=1, le=64)
    plots: bool = True


class ImportanceSection(Section):
    """`gbpipe importance`: permutation (per fold, seeded), gain/split and null importance of a run."""

    n_repeats: int = Field(default=5, ge=1, le=1000)  # shuffles per feature and fold
    seed: int = 0  # fold k of CV repeat r uses seed + 1000 * r + k
    n_jobs: int = Field(default=0, ge=0)  # prediction threads; 0 = all cores (never more)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)  # name -> columns permuted together
    group_patterns: dict[str, str] = Field(default_factory=dict)  # name -> regex over column names
    # A [features] experiment's features are also shuffled by family: each window, each source column,
    # the active counts, trends, lags and recencies (FeaturesSection.feature_families).
    feature_families: bool = True
    null_repeats: int = Field(default=5, ge=0, le=1000)  # target shuffles for null importance; 0 = skip
    null_num_boost_round: int = Field(default=300, ge=1)  # cap on rounds of each null refit
    plot_top: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _patterns_compile(self) -> ImportanceSection:
        for name, pattern in self.group_patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"importance.group_patterns.{name}: {pattern!r} is not a valid regex ({exc})"
                ) from None
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


class DriftSection(Section):
    """`gbpipe drift` and predict's drift check: new rows against the training rows, per feature (PSI, KL, KS on
    the training run's own bins) and as a whole (adversarial validation)."""

    # Population stability index bands of credit-scorecard monitoring: below 0.1 no significant shift, 0.1 to
    # 0.25 a moderate one to watch, above 0.25 a major one to act on (N. Siddiqi, "Credit Risk Scorecards",
    # Wiley 2006; the industry rule of thumb since).
    psi_moderate: float = Field(default=0.1, gt=0.0)
    psi_major: float = Field(default=0.25, gt=0.0)
    n_bins: int = Field(default=10, ge=2, le=100)  # quantile bins of a numeric feature (fewer when values tie)
    sample_rows: int = Field(default=20_000, ge=100)  # adversarial validation: at most this many rows per side
    n_splits: int = Field(default=5, ge=2, le=20)  # adversarial validation's stratified folds
    warn_on_predict: bool = True  # `gbpipe predict` counts the bins of its rows and warns past `warn_level`
    warn_level: Literal["moderate", "major"] = "moderate"
    # Fewer predicted rows are not checked: a small batch's shares are mostly sampling noise, which PSI counts as
    # drift (about (bins - 1) / rows for rows drawn from the training rows themselves, more for sparse categories).
    min_predict_rows: int = Field(default=1000, ge=1)
    seed: int = 0  # adversarial sampling, folds, model and shuffles

    @model_validator(mode="after")
    def _bands(self) -> DriftSection:
        if self.psi_major <= self.psi_moderate:
            raise ValueError(
                f"drift.psi_major ({self.psi_major}) must be above drift.psi_moderate ({self.psi_moderate}); "
                "the defaults are 0.25 and 0.1"
            )
        return self
