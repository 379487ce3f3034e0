"""`gbpipe train`: K-fold OOF LightGBM on an experiment, written to a run folder (resumable fold by fold)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipeline.config import Config, dump_config_toml
from pipeline.config.sections import DriftSection
from pipeline.core.errors import ArtifactError, ConfigError, DataError
from pipeline.core.metrics import GREATER_IS_BETTER, all_metrics
from pipeline.core.names import check_run_id
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunWriter, check_new_run, new_run_id, resumable_run
from pipeline.data.feature_bins import REFERENCE_FILE, fit_reference
from pipeline.data.prepare import Prepared, prepare
from pipeline.data.stream import StreamedMatrix
from pipeline.engine import outputs
from pipeline.engine.cv import CVResult, run_cv
from pipeline.engine.fold import FoldResult
from pipeline.engine.fold_store import stored_folds
from pipeline.engine.oof import validated_rows
from pipeline.engine.outputs import model_name, model_text, prediction_frame
from pipeline.engine.scoring import holdout_window_scores, scores_by_cutoff, test_entries
from pipeline.engine.spec import TrainSpec, model_key, train_spec

from .backtest import BacktestCutoff, backtest, backtest_document, plan_backtest
from .summary import render_markdown

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster


def run_dir_for(cfg: Config, run_id: str | None, resume: bool) -> Path:
    """The run folder to write; with --resume and no id, the newest unfinished run no process is writing."""
    if run_id is not None:
        check_run_id(run_id, "--run-id")
    exp_dir = Path(cfg.experiment.runs_dir) / cfg.experiment.name
    if run_id is None and resume:
        return resumable_run(exp_dir)
    return exp_dir / (run_id or new_run_id(cfg.hash()))


def train(
    cfg: Config,
    run_id: str | None = None,
    resume: bool = False,
    progress: Progress = QUIET,
    params: dict[str, Any] | None = None,
    cluster: Cluster | None = None,
    folds_from: Path | None = None,
) -> Path:
    """Train the experiment's fold models and write a complete run folder; returns its path. On a `cluster` the
    folds train as tasks there; the run folder is the same, written here. Folds that `folds_from` (the tuning study
    whose best_params.json gave `params`) keeps under this run's model key are taken from it, not trained again."""
    started = time.perf_counter()
    final_dir = run_dir_for(cfg, run_id, resume)
    check_new_run(final_dir, resume)  # refuse an existing run before spending time on the data
    prep = prepare(cfg, progress, stream=True)  # bad input fails here, before anything of the run is written
    replays = plan_backtest(cfg, prep)  # a backtest that cannot run fails here too, before training
    with RunWriter(final_dir, resume=resume) as writer:  # a failed run lets go of its lock for --resume
        config_text = dump_config_toml(cfg)
        spec = replace(train_spec(cfg, prep, params), cluster=cluster)
        schema = schema_document(cfg, prep, spec)
        if resume:
            check_resumable(writer, config_text, prep, schema["model_key"])
        writer.write_text("config.toml", config_text)
        writer.write_json("schema.json", schema)
        writer.write_parquet("folds.parquet", prep.folds.to_frame(prep.ids))
        writer.write_json(REFERENCE_FILE, drift_reference(cfg, prep))
        total = len(prep.folds.pairs())
        progress.restart()

        def on_fold_done(result: FoldResult, booster: lgb.Booster) -> None:
            save_fold(writer, result, booster)
            progress.step(
                "fold",
                result.fold + 1 + result.repeat * prep.folds.n_splits,
                total,
                f"best_iteration {result.best_iteration}  {cfg.metric} {result.score:.5f}  {result.seconds:.1f}s",
            )

        completed = load_checkpoint(writer, prep) if resume else {}
        if completed:
            progress.say(f"resume: {len(completed)} of {total} folds already done, training the rest")
        elif folds_from is not None and (
            completed := stored_folds(folds_from, schema["model_key"], prep.folds.pairs())
        ):
            for result, booster in completed.values():
                save_fold(writer, result, booster)
            progress.say(f"the {total} folds are taken from {folds_from}: its final retrain trained this model")
        train_columns, streamed = prep.tables.train.columns, isinstance(prep.X, StreamedMatrix)
        if streamed:  # a table too large to hold whole: its ids wait in folds.parquet while the folds train
            prep = prep.without_ids()
        result = run_cv(prep.X, prep.y, prep.folds, spec, prep.X_test, completed, on_fold_done)
        if streamed:
            prep = prep.with_ids(staged_ids(writer, prep), train_columns)
        progress.restart()
        replayed = backtest(cfg, prep, spec, result.oof_pred, replays, progress)
        scores = write_results(writer, cfg, prep, spec, result, time.perf_counter() - started, replayed)
        run_dir = writer.publish(
            {
                "experiment": cfg.experiment.name,
                "run_id": writer.final_dir.name,
                "config_hash": cfg.hash(),
                "data_fingerprint": prep.data_fingerprint,
            }
        )
    holdout = f", holdout {scores['holdout_score']:.5f}" if "holdout_score" in scores else ""
    progress.say(f"{cfg.metric} OOF {result.oof_score:.5f}{holdout}; run written to {run_dir}")
    return run_dir


def staged_ids(writer: RunWriter, prep: Prepared) -> pd.Series:
    """The training ids as this run's folds.parquet holds them, one per training row."""
    path = writer.path("folds.parquet")
    ids = pd.read_parquet(path, columns=[prep.id_name])[prep.id_name]
    if len(ids) != len(prep.y):
        raise ArtifactError(
            f"{path} holds {len(ids)} ids for {len(prep.y)} training rows: it was changed while the run trained; "
            "start the run again"
        )
    return ids


def check_resumable(writer: RunWriter, config_text: str, prep: Prepared, key: str) -> None:
    """A run resumes only with the config and data it was started with, trained the same way (in-process and on a
    cluster's folds alike, or across a cluster's workers): finished folds are reused as is."""
    if writer.exists("config.toml") and writer.path("config.toml").read_text() != config_text:
        raise ConfigError(
            f"--resume: the config differs from the one {writer.staging} was started with; "
            "resume with the same config, or start a new run"
        )
    if writer.exists("schema.json"):
        started_with = json.loads(writer.path("schema.json").read_text()).get("data_fingerprint")
        if started_with is not None and started_with != prep.data_fingerprint:
            raise DataError(
                f"--resume: the data changed since {writer.staging} was started (fingerprint "
                f"{started_with[:12]} then, {prep.data_fingerprint[:12]} now); its finished folds "
                "were trained on other rows. Start a new run without --resume"
            )
        started_key = json.loads(writer.path("schema.json").read_text()).get("model_key")
        if started_key is not None and started_key != key:
            raise ConfigError(
                f"--resume: {writer.staging} was started with its folds trained another way (in one process, or "
                "across a cluster's workers with lightgbm.dask, which gives other models); resume it as it was "
                "started, with or without --cluster, or start a new run"
            )


def drift_reference(cfg: Config, prep: Prepared) -> dict[str, Any]:
    """The training rows' bins and counts per feature: what `gbpipe drift` and predict's drift check count new
    rows in, saved with the run because the training rows may be gone by the time new ones arrive."""
    return fit_reference(prep.X, prep.schema, (cfg.drift or DriftSection()).n_bins).to_dict()


def save_fold(writer: RunWriter, result: FoldResult, booster: lgb.Booster) -> None:
    """Checkpoint one fold: its model (LightGBM text, up to the best iteration) and its result."""
    name = model_name(result.repeat, result.fold)
    writer.write_text(name, model_text(booster, result.best_iteration))
    writer.write_json(name.removesuffix(".txt") + ".json", asdict(result))


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
    return {
        **outputs.schema_document(cfg, prep),
        "params": spec.params,
        "data_fingerprint": prep.data_fingerprint,
        "model_key": model_key(spec, prep),  # an ensemble member with this key is taken from this run
    }


def write_results(
    writer: RunWriter,
    cfg: Config,
    prep: Prepared,
    spec: TrainSpec,
    result: CVResult,
    seconds: float,
    replays: Sequence[BacktestCutoff] = (),
) -> dict[str, Any]:
    """Write the run's predictions, importance, scores and short report; returns scores.json's content."""
    write_predictions(writer, cfg, prep, result)
    writer.write_parquet("importance.parquet", importance_table(result, prep))
    if prep.tables.summary is not None:
        writer.write_json("features_summary.json", prep.tables.summary)
    scores = scores_document(cfg, prep, result, seconds)
    if replays:
        scores["backtest"] = backtest_document(replays)
    writer.write_json("scores.json", scores)
    writer.write_text("report.md", render_markdown(cfg, scores, spec.params))
    return scores


def write_predictions(writer: RunWriter, cfg: Config, prep: Prepared, result: CVResult) -> None:
    """oof.parquet and test_pred.parquet. Their frames are as long as the tables: they are gone once written,
    before the scores are computed."""
    oof = prediction_frame(result.oof_pred, prep, prep.ids)
    oof.insert(1, "fold", prep.folds.assignments[0].astype("int16"))
    oof.insert(2, "target", prep.tables.train[cfg.data.target].to_numpy())
    writer.write_parquet("oof.parquet", oof)
    del oof
    if result.test_pred is None:
        return
    test = prediction_frame(result.test_pred, prep, prep.test_ids)
    if prep.y_test is not None:
        test.insert(1, "target", prep.tables.test[cfg.data.target].to_numpy())
    for k, fold_pred in enumerate(result.test_pred_folds):
        fold_cols = (
            prediction_frame(fold_pred, prep, prep.test_ids)
            .filter(like="pred")
            .drop(columns=["label_pred"], errors="ignore")
        )
        test = pd.concat([test, fold_cols.add_prefix(f"fold{k}_")], axis=1)
    writer.write_parquet("test_pred.parquet", test)


def importance_table(result: CVResult, prep: Prepared) -> pd.DataFrame:
    """Gain and split importance per fold and averaged over folds (fold = -1), in long format."""
    names = dict(zip(prep.schema.model_names, prep.schema.columns))
    per_fold = result.importance.melt(
        id_vars=["repeat", "fold", "feature"], value_vars=["gain", "split"], var_name="kind", value_name="value"
    )
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
        "experiment": cfg.experiment.name,
        "task": cfg.data.task,
        "metric": cfg.metric,
        "greater_is_better": GREATER_IS_BETTER[cfg.metric],
        "oof_score": result.oof_score,
        "oof_metrics": all_metrics(cfg.data.task, *validated_rows(validated, prep.y, result.oof_pred)),
        "fold_scores": fold_scores,
        "fold_score_mean": float(np.mean(fold_scores)),
        "fold_score_std": float(np.std(fold_scores)),
        "best_iterations": result.best_iterations,
        "folds": [asdict(f) for f in result.folds],
        "splitter": cfg.splitter,
        "n_splits": cfg.cv.n_splits,
        "n_repeats": cfg.cv.n_repeats,
        "early_stopping": cfg.model.early_stopping,
        "score_source": "oof" if cfg.model.early_stopping == "inner" else "oof (early-stopped on the scored fold)",
        "best_iteration_rule": result.best_iteration_rule,
        "n_rows": int(len(prep.y)),
        "n_validated": int(validated.sum()),
        "n_features": len(prep.schema.columns),
        "seconds": seconds,
    }
    if cfg.splitter == "time":
        doc["time_gap"] = cfg.time_gap
    doc.update(test_entries(cfg, prep, result.test_pred))
    by_cutoff = scores_by_cutoff(cfg, prep, prep.y, result.oof_pred, validated)
    if by_cutoff:
        doc["oof_score_by_cutoff"] = by_cutoff
    doc.update(holdout_window_scores(cfg, prep, result.oof_pred, validated))
    return doc
