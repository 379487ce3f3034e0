"""`gbpipe train`: K-fold OOF LightGBM on an experiment, written to a run folder."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from .artifacts import PARTIAL_SUFFIX, RunWriter, check_new_run, check_run_name
from .backtest import BacktestCutoff, backtest, backtest_document, cutoff_dates, plan_backtest
from .config import Config, dump_config_toml
from .cv import CVResult, FoldResult, TrainSpec, resolve_params, run_cv
from .errors import ConfigError, DataError
from .metrics import GREATER_IS_BETTER, score, task_metrics, to_labels
from .prepare import Prepared, prepare
from .progress import QUIET, Progress
from .report import render_markdown


def train_spec(cfg: Config, prep: Prepared, params: dict[str, Any] | None = None) -> TrainSpec:
    """The engine's spec from the config (and optional tuned params that override it)."""
    merged = {**cfg.model.params, **(params or {})}
    num_class = prep.labels.n_classes if cfg.data.task == "multiclass" else 1
    return TrainSpec(task=cfg.data.task, metric=cfg.metric,
                     params=resolve_params(cfg.data.task, cfg.metric, merged, num_class, cfg.cv.seed,
                                           cfg.model.num_threads),
                     num_boost_round=cfg.model.num_boost_round,
                     early_stopping_rounds=cfg.model.early_stopping_rounds,
                     early_stopping=cfg.model.early_stopping, inner_valid_fraction=cfg.model.inner_valid_fraction,
                     num_class=num_class, feature_names=tuple(prep.schema.model_names),
                     categorical=tuple(prep.schema.categorical_indices), seed=cfg.cv.seed,
                     fold_workers=cfg.model.fold_workers)


def new_run_id(cfg: Config) -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + cfg.hash()[:6]


def run_dir_for(cfg: Config, run_id: str | None, resume: bool) -> Path:
    """The run folder to write; with --resume and no id, the newest unfinished run."""
    check_run_name(cfg.experiment.name, "experiment.name")
    if run_id is not None:
        check_run_name(run_id, "--run-id")
    exp_dir = Path(cfg.experiment.runs_dir) / cfg.experiment.name
    if run_id is None and resume:
        partial = sorted(exp_dir.glob(f"*{PARTIAL_SUFFIX}"))
        if not partial:
            raise ConfigError(f"--resume: no unfinished run in {exp_dir}; start a new one without --resume")
        return partial[-1].with_name(partial[-1].name.removesuffix(PARTIAL_SUFFIX))
    return exp_dir / (run_id or new_run_id(cfg))


def train(cfg: Config, run_id: str | None = None, resume: bool = False, progress: Progress = QUIET,
          params: dict[str, Any] | None = None) -> Path:
    """Train the experiment's fold models and write a complete run folder; returns its path."""
    started = time.perf_counter()
    final_dir = run_dir_for(cfg, run_id, resume)
    check_new_run(final_dir, resume)  # refuse an existing run before spending time on the data
    prep = prepare(cfg, progress)  # bad input fails here, before anything of the run is written
    replays = plan_backtest(cfg, prep)  # a backtest that cannot run fails here too, before training
    writer = RunWriter(final_dir, resume=resume)
    config_text = dump_config_toml(cfg)
    if resume:
        check_resumable(writer, config_text, prep)
    writer.write_text("config.toml", config_text)
    spec = train_spec(cfg, prep, params)
    writer.write_json("schema.json", schema_document(cfg, prep, spec))
    writer.write_parquet("folds.parquet", prep.folds.to_frame(prep.ids))
    total = len(prep.folds.pairs())
    progress.restart()

    def on_fold_done(result: FoldResult, booster: lgb.Booster) -> None:
        save_fold(writer, result, booster)
        progress.step("fold", result.fold + 1 + result.repeat * prep.folds.n_splits, total,
                      f"best_iteration {result.best_iteration}  {cfg.metric} {result.score:.5f}  "
                      f"{result.seconds:.1f}s")

    completed = load_checkpoint(writer, prep) if resume else {}
    if completed:
        progress.say(f"resume: {len(completed)} of {total} folds already done, training the rest")
    result = run_cv(prep.X, prep.y, prep.folds, spec, prep.X_test, completed, on_fold_done)
    progress.restart()
    replayed = backtest(cfg, prep, spec, result.oof_pred, replays, progress)
    scores = write_results(writer, cfg, prep, spec, result, time.perf_counter() - started, replayed)
    run_dir = writer.publish({"experiment": cfg.experiment.name, "run_id": writer.final_dir.name,
                              "config_hash": cfg.hash(), "data_fingerprint": prep.data_fingerprint})
    holdout = f", holdout {scores['holdout_score']:.5f}" if "holdout_score" in scores else ""
    progress.say(f"{cfg.metric} OOF {result.oof_score:.5f}{holdout}; run written to {run_dir}")
    return run_dir


def check_resumable(writer: RunWriter, config_text: str, prep: Prepared) -> None:
    """A run resumes only with the config and data it was started with: finished folds are reused as is."""
    if writer.exists("config.toml") and writer.path("config.toml").read_text() != config_text:
        raise ConfigError(f"--resume: the config differs from the one {writer.staging} was started with; "
                          "resume with the same config, or start a new run")
    if writer.exists("schema.json"):
        started_with = json.loads(writer.path("schema.json").read_text()).get("data_fingerprint")
        if started_with is not None and started_with != prep.data_fingerprint:
            raise DataError(f"--resume: the data changed since {writer.staging} was started (fingerprint "
                            f"{started_with[:12]} then, {prep.data_fingerprint[:12]} now); its finished folds "
                            "were trained on other rows. Start a new run without --resume")


def model_name(repeat: int, fold: int) -> str:
    return f"models/fold_{fold}.txt" if repeat == 0 else f"models/fold_{fold}_r{repeat}.txt"


def save_fold(writer: RunWriter, result: FoldResult, booster: lgb.Booster) -> None:
    """Checkpoint one fold: its model (LightGBM text, up to the best iteration) and its result."""
    name = model_name(result.repeat, result.fold)
    writer.write_text(name, model_text(booster, result.best_iteration))
    writer.write_json(name.removesuffix(".txt") + ".json", asdict(result))


# How many threads trained a model is not part of the model: the trees are the same for any count
# (deterministic=True, force_col_wise=True), so the saved text leaves it out and is byte-identical.
_THREADS_LINE = re.compile(r"^\[num_threads: \d+\]\n", re.MULTILINE)


def model_text(booster: lgb.Booster, best_iteration: int) -> str:
    """The fold model as LightGBM text up to its best iteration, without the thread count it ran with."""
    return _THREADS_LINE.sub("", booster.model_to_string(num_iteration=best_iteration))


def load_checkpoint(writer: RunWriter, prep: Prepared) -> dict[tuple[int, int], tuple[FoldResult, lgb.Booster]]:
    """Folds finished before an interruption: both files present and readable."""
    done = {}
    for repeat, fold in prep.folds.pairs():
        name = model_name(repeat, fold)
        meta = writer.path(name.removesuffix(".txt") + ".json")
        if writer.exists(name) and meta.is_file():
            result = FoldResult(**json.loads(meta.read_text()))
            done[(repeat, fold)] = (result, lgb.Booster(model_str=writer.path(name).read_text()))
    return done


def schema_document(cfg: Config, prep: Prepared, spec: TrainSpec) -> dict[str, Any]:
    return {"task": cfg.data.task, "metric": cfg.metric, "target": cfg.data.target, "id": prep.id_name,
            "features": prep.schema.to_dict(), "model_names": prep.schema.model_names,
            "labels": prep.labels.to_dict(), "params": spec.params, "data_fingerprint": prep.data_fingerprint}


def prediction_frame(pred: np.ndarray, prep: Prepared, ids: pd.Series) -> pd.DataFrame:
    """id, `pred` (or `pred_<class>` per class) and, for classifiers, the decoded `label_pred`."""
    frame = pd.DataFrame({prep.id_name: ids.to_numpy()})
    if pred.ndim == 2:
        for k, cls in enumerate(prep.labels.classes):
            frame[f"pred_{cls}"] = pred[:, k]
    else:
        frame["pred"] = pred
    if prep.labels.task != "regression":
        valid = ~np.isnan(pred if pred.ndim == 1 else pred[:, 0])
        labels = np.full(len(pred), None, dtype=object)
        labels[valid] = prep.labels.decode(to_labels(pred[valid]))
        frame["label_pred"] = labels
    return frame


def write_results(writer: RunWriter, cfg: Config, prep: Prepared, spec: TrainSpec, result: CVResult,
                  seconds: float, replays: Sequence[BacktestCutoff] = ()) -> dict[str, Any]:
    """Write the run's predictions, importance, scores and short report; returns scores.json's content."""
    target = prep.tables.train[cfg.data.target].to_numpy()
    oof = prediction_frame(result.oof_pred, prep, prep.ids)
    oof.insert(1, "fold", prep.folds.assignments[0].astype("int16"))
    oof.insert(2, "target", target)
    writer.write_parquet("oof.parquet", oof)
    if result.test_pred is not None:
        test = prediction_frame(result.test_pred, prep, prep.test_ids)
        if prep.y_test is not None:
            test.insert(1, "target", prep.tables.test[cfg.data.target].to_numpy())
        for k, fold_pred in enumerate(result.test_pred_folds):
            fold_cols = prediction_frame(fold_pred, prep, prep.test_ids).filter(like="pred").drop(
                columns=["label_pred"], errors="ignore")
            test = pd.concat([test, fold_cols.add_prefix(f"fold{k}_")], axis=1)
        writer.write_parquet("test_pred.parquet", test)
    writer.write_parquet("importance.parquet", importance_table(result, prep))
    if prep.tables.summary is not None:
        writer.write_json("features_summary.json", prep.tables.summary)
    scores = scores_document(cfg, prep, result, seconds)
    if replays:
        scores["backtest"] = backtest_document(replays)
    writer.write_json("scores.json", scores)
    writer.write_text("report.md", render_markdown(cfg, scores, spec.params))
    return scores


def importance_table(result: CVResult, prep: Prepared) -> pd.DataFrame:
    """Gain and split importance per fold and averaged over folds (fold = -1), in long format."""
    names = dict(zip(prep.schema.model_names, prep.schema.columns))
    per_fold = result.importance.melt(id_vars=["repeat", "fold", "feature"], value_vars=["gain", "split"],
                                      var_name="kind", value_name="value")
    per_fold["feature"] = per_fold["feature"].map(names)
    per_fold["value"] = per_fold["value"].astype("float64")
    mean = per_fold.groupby(["kind", "feature"], sort=False)["value"].agg(["mean", "std"]).reset_index()
    mean = mean.rename(columns={"mean": "value"}).assign(repeat=-1, fold=-1)
    per_fold["std"] = np.nan
    columns = ["kind", "feature", "repeat", "fold", "value", "std"]
    return pd.concat([per_fold[columns], mean[columns]], ignore_index=True)


def scores_document(cfg: Config, prep: Prepared, result: CVResult, seconds: float) -> dict[str, Any]:
    validated = prep.folds.validated()
    fold_scores = result.fold_scores
    doc = {
        "experiment": cfg.experiment.name, "task": cfg.data.task, "metric": cfg.metric,
        "greater_is_better": GREATER_IS_BETTER[cfg.metric], "oof_score": result.oof_score,
        "oof_metrics": all_metrics(cfg.data.task, prep.y[validated], result.oof_pred[validated]),
        "fold_scores": fold_scores, "fold_score_mean": float(np.mean(fold_scores)),
        "fold_score_std": float(np.std(fold_scores)), "best_iterations": result.best_iterations,
        "folds": [asdict(f) for f in result.folds], "splitter": cfg.splitter, "n_splits": cfg.cv.n_splits,
        "n_repeats": cfg.cv.n_repeats, "early_stopping": cfg.model.early_stopping,
        "score_source": "oof" if cfg.model.early_stopping == "inner" else "oof (early-stopped on the scored fold)",
        "n_rows": int(len(prep.y)), "n_validated": int(validated.sum()), "n_features": len(prep.schema.columns),
        "seconds": seconds,
    }
    if cfg.splitter == "time":
        doc["time_gap"] = cfg.time_gap
    doc.update(test_entries(cfg, prep, result))
    by_cutoff = scores_by_cutoff(cfg, prep, prep.y, result.oof_pred, validated)
    if by_cutoff:
        doc["oof_score_by_cutoff"] = by_cutoff
    doc.update(holdout_window_scores(cfg, prep, result.oof_pred, validated))
    return doc


def test_entries(cfg: Config, prep: Prepared, result: CVResult) -> dict[str, Any]:
    """The holdout's scores when the test rows have labels, else `unlabelled_test`."""
    if result.test_pred is None:
        return {}
    if prep.y_test is None:
        return unlabelled_test(prep)
    window = (prep.tables.summary or {}).get("test_label_window")
    entries = {"holdout_score": score(cfg.metric, prep.y_test, result.test_pred),
               "holdout_metrics": all_metrics(cfg.data.task, prep.y_test, result.test_pred),
               "n_holdout": int(len(prep.y_test))}
    if window is not None:
        entries["holdout_label_window"] = window
    return entries


def unlabelled_test(prep: Prepared) -> dict[str, Any]:
    """How many test rows were predicted without labels, and the scoring cutoff when they are a
    features experiment's rows after the data's end."""
    entries: dict[str, Any] = {"n_test": int(len(prep.X_test))}
    summary = prep.tables.summary or {}
    if not summary.get("test_label_window", {}).get("labels_known", True):
        entries["scoring_cutoff"] = summary["test_cutoff"]
    return entries


def scores_by_cutoff(cfg: Config, prep: Prepared, y: np.ndarray, oof_pred: np.ndarray,
                     validated: np.ndarray) -> dict[str, float]:
    """The OOF score of each training cutoff of a features experiment: pooled OOF mixes cutoffs with
    short and long histories, so this is what to hold a forward holdout's score against."""
    if cfg.features is None:
        return {}
    cutoffs = np.datetime_as_string(cutoff_dates(cfg, prep), unit="D")
    out = {}
    for cutoff in sorted(set(cutoffs[validated])):
        rows = validated & (cutoffs == cutoff)
        try:
            out[cutoff] = score(cfg.metric, y[rows], oof_pred[rows])
        except ValueError:  # one class only at this cutoff: AUC undefined
            continue
    return out


def holdout_window_scores(cfg: Config, prep: Prepared, oof_pred: np.ndarray,
                          validated: np.ndarray) -> dict[str, Any]:
    """The OOF predictions scored against the training rows' labels over the first days of their windows, as
    many as the data leaves the holdout: the like-for-like counterpart of a holdout cut short."""
    labels = prep.tables.holdout_window_labels
    if labels is None:
        return {}
    y = labels.to_numpy()
    if len(y) != len(oof_pred):
        raise RuntimeError(f"{len(y)} short-window labels for {len(oof_pred)} training rows: they must be aligned")
    by_cutoff = scores_by_cutoff(cfg, prep, y, oof_pred, validated)
    return {"oof_at_holdout_window": {
        "days": prep.tables.summary["test_label_window"]["training_label_days"],
        "oof_score": score(cfg.metric, y[validated], oof_pred[validated]),
        "mean_by_cutoff": float(np.mean(list(by_cutoff.values()))), "by_cutoff": by_cutoff}}


def all_metrics(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {m: score(m, y, pred) for m in task_metrics(task)}
