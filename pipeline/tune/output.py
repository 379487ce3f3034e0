"""What `gbpipe tune` leaves in runs/<exp>/tune/<study>/: best_params.json, trials.parquet, tune.json,
Optuna's matplotlib plots and a manifest.json with the sha256 of each; plus the progress lines.

The outputs are rewritten from the study's storage at the end of every `gbpipe tune` call (the study
grows when resumed), each file atomically and under a lock, the manifest last.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import time
import warnings
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import Config
from pipeline.core.artifacts import json_bytes, library_versions, parquet_bytes
from pipeline.core.metrics import GREATER_IS_BETTER
from pipeline.core.progress import Progress
from pipeline.core.run_folder import update_in_place
from pipeline.engine.fold_store import FOLDER as FOLD_FOLDER

from .space import SearchSpace, tune_section
from .storage import redact
from .study import EXCLUDED_ATTR, FINGERPRINT_ATTR, REASON_ATTR, WORKER_ATTR, budget_of, counts_toward_budget

OUTPUT_FILES = (
    "best_params.json",
    "trials.parquet",
    "tune.json",
    "plots/optimization_history.png",
    "plots/param_importances.png",
    "plots/slice.png",
)
ROLE_ATTR = "gbpipe_role"


class ProgressReporter:
    """Prints one line per finished trial: n/N, its score, best so far, pruned and failed counts, ETA."""

    def __init__(self, study: optuna.Study, n_trials: int, metric: str, progress: Progress):
        self.study, self.n_trials, self.metric, self.progress = study, n_trials, metric, progress
        trials = study.get_trials(deepcopy=False)
        self.seen = {t.number for t in trials if t.state.is_finished()}
        self.finished_at_start = budget_of(trials).finished
        self.started = time.perf_counter()

    def update(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        new = sorted((t for t in trials if t.state.is_finished() and t.number not in self.seen), key=lambda t: t.number)
        if not new:
            return
        self.seen.update(t.number for t in new)
        budget = budget_of(trials)
        best = best_trial(trials, self.metric)
        best_text = f"best {self.metric} {best.value:.5f} (#{best.number})" if best else "no complete trial yet"
        done_here = budget.finished - self.finished_at_start
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done_here * max(0, self.n_trials - budget.finished) if done_here > 0 else float("nan")
        for trial in new:
            self.progress.say(
                f"trial {min(budget.finished, self.n_trials)}/{self.n_trials}  #{trial.number} "
                f"{describe_outcome(trial, self.metric)}  {best_text}  pruned {budget.pruned}  "
                f"failed {budget.failed + budget.excluded}  elapsed {elapsed:.1f}s  eta {eta:.1f}s"
            )


def best_trial(trials: list[FrozenTrial], metric: str) -> FrozenTrial | None:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    return max(complete, key=lambda t: (sign * t.value, -t.number), default=None)


def describe_outcome(trial: FrozenTrial, metric: str) -> str:
    if trial.state == TrialState.COMPLETE:
        return f"{metric} {trial.value:.5f}"
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        last = max(trial.intermediate_values)
        return f"pruned after fold {last} ({metric} {trial.intermediate_values[last]:.5f})"
    if trial.state == TrialState.PRUNED:
        return "pruned"
    return f"FAIL ({trial.user_attrs.get(REASON_ATTR, 'no reason recorded')})"


# ---- the files ----
def trials_frame(trials: list[FrozenTrial], space: SearchSpace) -> pd.DataFrame:
    """One row per trial: state, value, whether it counts, failure reason, folds done, worker, parameters."""
    rows = []
    for t in trials:
        owner = t.user_attrs.get(WORKER_ATTR) or {}
        steps = t.intermediate_values
        row = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value if t.state == TrialState.COMPLETE else None,
            "running_score": steps[max(steps)] if steps else None,
            "folds_done": len(steps),
            "counted": counts_toward_budget(t),
            "excluded": bool(t.user_attrs.get(EXCLUDED_ATTR)),
            "fail_reason": t.user_attrs.get(REASON_ATTR),
            "default_trial": t.user_attrs.get(ROLE_ATTR) == "defaults",
            "seconds": t.user_attrs.get("seconds"),
            "datetime_start": _utc(t.datetime_start),
            "datetime_complete": _utc(t.datetime_complete),
            "worker": f"{owner['host']}:{owner['pid']}" if owner else None,
            "fold_scores": t.user_attrs.get("fold_scores"),
            "best_iterations": t.user_attrs.get("best_iterations"),
        }
        row.update({f"param_{name}": t.params.get(name) for name in space.distributions})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in space.distributions:  # choices may mix types; parquet columns need one
        column = f"param_{name}"
        if column in frame and frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v)).astype("string")
    return frame


def _utc(moment):
    return None if moment is None else pd.Timestamp(moment.astimezone(UTC))


def best_document(
    best: FrozenTrial, cfg: Config, space: SearchSpace, study_dir: Path, final: dict[str, Any] | None
) -> dict[str, Any]:
    """best_params.json: {"params": ...} is what `gbpipe train --params` reads."""
    params = space.trial_params(best.params)
    if final and final.get("used"):
        params["learning_rate"] = final["learning_rate"]
    return {
        "params": params,
        "value": best.value,
        "metric": cfg.metric,
        "greater_is_better": GREATER_IS_BETTER[cfg.metric],
        "trial": best.number,
        "study": study_dir.name,
        "experiment": cfg.experiment.name,
        "search_learning_rate": space.learning_rate,
        "fold_scores": best.user_attrs.get("fold_scores"),
        "best_iterations": best.user_attrs.get("best_iterations"),
        "final": final,
        "usage": f"gbpipe train --config <config> --params {study_dir / 'best_params.json'}",
    }


def summary_document(
    trials: list[FrozenTrial],
    study: optuna.Study,
    cfg: Config,
    space: SearchSpace,
    options,
    where: str,
    final: dict[str, Any] | None,
    stats: dict[str, Any],
) -> dict[str, Any]:
    tune = tune_section(cfg)
    budget = budget_of(trials)
    best = best_trial(trials, cfg.metric)
    default = next((t for t in trials if t.user_attrs.get(ROLE_ATTR) == "defaults"), None)
    failures = [t.user_attrs.get(REASON_ATTR) for t in trials if t.state == TrialState.FAIL]
    return {
        "experiment": cfg.experiment.name,
        "study": options.study_name,
        "storage": where,
        "metric": cfg.metric,
        "direction": "maximize" if GREATER_IS_BETTER[cfg.metric] else "minimize",
        "n_trials": options.n_trials,
        "n_finished": budget.finished,
        "counts": {
            "complete": budget.complete,
            "pruned": budget.pruned,
            "failed": budget.failed,
            "failed_excluded": budget.excluded,
            "running": budget.running,
            "waiting": budget.waiting,
        },
        "best": None
        if best is None
        else {
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "seconds": best.user_attrs.get("seconds"),
        },
        "default_trial": {
            "trial": getattr(default, "number", None),
            "params": space.default_trial,
            "value": default.value if default and default.state == TrialState.COMPLETE else None,
            "notes": list(space.default_notes),
        },
        "first_failure": next((f for f in failures if f), None),
        "search_space": space.describe(),
        "fixed": space.fixed,
        "final": final,
        "sampler": {
            "name": "TPE",
            "multivariate": True,
            "seed": tune.seed,
            "n_startup_trials": tune.n_startup_trials,
            "seeded_by": "seed and trial number",
        },
        "pruner": tune.pruner,
        "timeout": options.timeout,
        "fingerprint": study.user_attrs.get(FINGERPRINT_ATTR),
        "reproducible": "the same seed and --n-trials with one worker give the same trials; --timeout and several "
        "workers do not",
        **stats,
    }


def plot_files(study: optuna.Study) -> tuple[dict[str, bytes], dict[str, str]]:
    """Optuna's matplotlib plots as PNG bytes; plots that cannot be drawn yet are listed with the reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as ovm

    plots = {
        "plots/optimization_history.png": ovm.plot_optimization_history,
        "plots/param_importances.png": lambda s: ovm.plot_param_importances(
            s, evaluator=FanovaImportanceEvaluator(seed=0)
        ),
        "plots/slice.png": ovm.plot_slice,
    }
    files, skipped = {}, {}
    for name, draw in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = draw(study)
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
                figure.set_size_inches(max(figure.get_size_inches()[0], 8), max(figure.get_size_inches()[1], 5))
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=100)
            files[name] = buffer.getvalue()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
        finally:
            plt.close("all")
    return files, skipped


@contextlib.contextmanager
def output_lock(study_dir: Path) -> Iterator[None]:
    """Serialise output writing between processes that finish together (several workers, one folder)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    with open(study_dir / ".outputs.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_outputs(
    study_dir: Path,
    study: optuna.Study,
    cfg: Config,
    space: SearchSpace,
    options,
    where: str,
    final: dict[str, Any] | None,
    stats: dict[str, Any],
    final_files: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write every output file atomically, then the manifest; returns the summary (tune.json). `final_files` are the
    final retrain's folds (engine/fold_store.py), kept for `gbpipe train --params best_params.json`."""
    where = redact(where)  # a file must never hold a credential, whichever caller built `where`
    with output_lock(study_dir):
        trials = study.get_trials(deepcopy=False)
        best = best_trial(trials, cfg.metric)
        files = {"trials.parquet": parquet_bytes(trials_frame(trials, space))}
        if best is not None:
            files["best_params.json"] = json_bytes(best_document(best, cfg, space, study_dir, final))
        skipped: dict[str, str] = {}
        if tune_section(cfg).plots and best is not None:
            plots, skipped = plot_files(study)
            files.update(plots)
        summary = summary_document(trials, study, cfg, space, options, where, final, stats)
        summary["plots"] = sorted(n for n in files if n.startswith("plots/"))
        summary["plots_skipped"] = skipped
        files["tune.json"] = json_bytes(summary)
        files.update(final_files or {})
        stale = [*OUTPUT_FILES, *(str(p.relative_to(study_dir)) for p in (study_dir / FOLD_FOLDER).rglob("*.*"))]
        for name in stale:  # a file of an earlier call that this call does not write is stale
            if name not in files:
                (study_dir / name).unlink(missing_ok=True)
        update_in_place(
            study_dir,
            files,
            "tune",
            {
                "versions": {**library_versions(), "optuna": optuna.__version__},
                "experiment": cfg.experiment.name,
                "study": options.study_name,
                "storage": where,
                "config_hash": cfg.hash(),
            },
        )
    return summary
