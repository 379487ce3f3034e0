"""`gbpipe importance`: permutation, gain/split and null importance of a training run.

Each fold model is scored on its own validation rows, rebuilt from the run's experiment (the data
fingerprint must match the run's). Results go into the run through `add_files` (stage
"importance"): importance/importance.parquet (long format), importance/summary.json and plots.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.compute.cluster import as_sent, results_in_order
from pipeline.config import Config
from pipeline.config.sections import ImportanceSection
from pipeline.core.artifacts import json_bytes, parquet_bytes
from pipeline.core.errors import ArtifactError, ConfigError, DataError
from pipeline.core.metrics import GREATER_IS_BETTER
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunReader, add_files
from pipeline.engine.cv import run_cv
from pipeline.engine.run_data import RunData, load_run_data
from pipeline.engine.spec import available_cores, train_spec

from .permutation import FoldPermutation, merge_drops, permutation_drops

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

STAGE = "importance"
TASKS_PER_WORKER = 2  # permutation tasks per worker over a run's folds, at least one per fold model
COLUMNS = ["kind", "feature", "cv_repeat", "fold", "repeat", "value", "std", "ci_low", "ci_high", "p_value", "n"]


def run_importance(
    run_dir: Path,
    overrides: list[str] | tuple[str, ...] = (),
    progress: Progress = QUIET,
    replace_files: bool = False,
    cluster: Cluster | None = None,
) -> Path:
    """Compute every importance kind of a run and add the files to it; returns the run folder. On a `cluster`
    permutations and the null-importance refits' folds are tasks there (the same numbers)."""
    started = time.perf_counter()
    for item in overrides:
        if not item.startswith("importance."):
            raise ConfigError(
                f"--set {item!r}: only importance.* settings can change here; the rest "
                "of the experiment is fixed by the run"
            )
    data = load_run_data(run_dir, overrides, progress, stream=True)
    settings = data.cfg.importance or ImportanceSection()
    groups = feature_groups(settings, list(data.prep.schema.columns), data.cfg)
    _check_replace(data.reader, output_names(settings, bool(groups)), replace_files)
    n_jobs = min(settings.n_jobs or available_cores(), available_cores())
    perm, baselines, share = permutation_frame(data, groups, settings, n_jobs, progress, cluster)
    frames = [training_importance(data.reader), perm]
    if settings.null_repeats:
        frames.append(null_importance(data, settings, n_jobs, progress, cluster))
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    summary = summary_document(data, settings, groups, table, baselines, share, time.perf_counter() - started)
    files = {"importance/importance.parquet": parquet_bytes(table), "importance/summary.json": json_bytes(summary)}
    from .plots import importance_plots

    files.update(importance_plots(table, data.cfg.metric, settings.plot_top))
    out = add_files(data.reader.dir, STAGE, files, replace=replace_files)
    progress.say(f"importance written to {out / 'importance'}")
    return out


def feature_groups(settings: ImportanceSection, columns: list[str], cfg: Config) -> list[tuple[str, list[int]]]:
    """The named groups of columns to permute together (explicit lists, regex patterns, then the feature
    families of a [features] experiment, those of two or more model columns)."""
    index = {c: i for i, c in enumerate(columns)}
    groups = []
    for name, members in settings.groups.items():
        unknown = [c for c in members if c not in index]
        if unknown:
            raise DataError(
                f"importance.groups.{name} names {len(unknown)} columns that are not features: "
                f"{unknown}; features are: {', '.join(columns)}"
            )
        groups.append((name, [index[c] for c in members]))
    for name, pattern in settings.group_patterns.items():
        members = [i for c, i in index.items() if re.search(pattern, c)]
        if not members:
            raise DataError(
                f"importance.group_patterns.{name} = {pattern!r} matches no feature column; "
                f"features are: {', '.join(columns)}"
            )
        groups.append((name, members))
    if settings.feature_families and cfg.features is not None:
        named = set(settings.groups) | set(settings.group_patterns)
        for name, family in cfg.features.feature_families().items():
            members = [index[c] for c in family if c in index]  # a selected feature list may leave some out
            if name not in named and len(members) > 1:
                groups.append((name, members))
    return groups


def fold_seed(seed: int, cv_repeat: int, fold: int) -> int:
    """The permutation seed of one fold model (what scikit-learn's random_state gets)."""
    return seed + 1000 * cv_repeat + fold


def permutation_frame(
    data: RunData,
    groups: list[tuple[str, list[int]]],
    settings: ImportanceSection,
    n_jobs: int,
    progress: Progress,
    cluster: Cluster | None = None,
) -> tuple[pd.DataFrame, list[float], float]:
    """Per fold and repeat drops of every feature (kind permutation) and group (permutation_group); on a `cluster`
    each fold model's features are split into tasks there (the same numbers: see _fold_drops_on_cluster)."""
    prep, columns = data.prep, list(data.prep.schema.columns)
    units = [[j] for j in range(len(columns))] + [members for _, members in groups]
    names = columns + [name for name, _ in groups]
    kinds = ["permutation"] * len(columns) + ["permutation_group"] * len(groups)
    rows, baselines, predicted, total = [], [], 0, 0
    pairs = prep.folds.pairs()
    progress.restart()
    for (cv_repeat, fold), result in fold_drops(data, units, settings, n_jobs, progress, cluster):
        baselines.append(result.baseline_score)
        predicted, total = predicted + result.rows_predicted, total + result.rows_total
        for u, name in enumerate(names):
            for r in range(settings.n_repeats):
                rows.append((kinds[u], name, cv_repeat, fold, r, float(result.drops[u, r])))
        progress.step(
            "permutation fold",
            pairs.index((cv_repeat, fold)) + 1,
            len(pairs),
            f"baseline {data.cfg.metric} {result.baseline_score:.5f}  "
            f"rows predicted {result.rows_predicted / max(result.rows_total, 1):.0%}",
        )
    per_fold = pd.DataFrame(rows, columns=["kind", "feature", "cv_repeat", "fold", "repeat", "value"])
    return with_aggregates(per_fold, settings.confidence), baselines, predicted / max(total, 1)


def fold_drops(
    data: RunData,
    units: list[list[int]],
    settings: ImportanceSection,
    n_jobs: int,
    progress: Progress,
    cluster: Cluster | None,
) -> Iterator[tuple[tuple[int, int], FoldPermutation]]:
    """Each fold model's permutation drops on its validation rows, in fold order."""
    if cluster is not None:
        yield from _fold_drops_on_cluster(data, units, settings, cluster)
        return
    pairs, boosters, fixed = data.prep.folds.pairs(), data.fitted.boosters, (data.prep.labels.task, data.cfg.metric)
    for k, pair in enumerate(pairs):
        X, y = _validation_rows(data, pair)
        seed = fold_seed(settings.seed, *pair)
        on_group = _feature_progress(progress, f"fold {k + 1}")
        yield pair, permutation_drops(boosters[k], X, y, *fixed, units, settings.n_repeats, seed, n_jobs, on_group)


def _fold_drops_on_cluster(
    data: RunData, units: list[list[int]], settings: ImportanceSection, cluster: Cluster
) -> Iterator[tuple[tuple[int, int], FoldPermutation]]:
    """fold_drops on a cluster. A fold model's groups go in chunks, a task each, so that more workers than folds all
    have work; a fold's repeats stay in one task, where a row taking the same bin in two repeats is predicted once.
    A fold's model and validation rows go to the workers once for all its chunks, when a worker can take them."""
    pairs, boosters, fixed = data.prep.folds.pairs(), data.fitted.boosters, (data.prep.labels.task, data.cfg.metric)
    n_chunks = min(len(units), -(-TASKS_PER_WORKER * cluster.n_workers // len(pairs)))
    chunks = [[units[u] for u in chunk] for chunk in np.array_split(np.arange(len(units)), n_chunks)]

    def tasks() -> Iterator[tuple]:
        for k, pair in enumerate(pairs):
            sent = [cluster.client.submit(as_sent, v, pure=False) for v in (boosters[k], *_validation_rows(data, pair))]
            seed = fold_seed(settings.seed, *pair)
            for chunk in chunks:
                arguments = (*sent, *fixed, chunk, settings.n_repeats, seed, cluster.threads_per_task)
                yield pair, permutation_drops, arguments

    parts: list[FoldPermutation] = []
    for pair, part in results_in_order(cluster.client, tasks(), cluster.n_workers):
        parts.append(part)
        if len(parts) == len(chunks):
            yield pair, merge_drops(parts)
            parts = []


def _validation_rows(data: RunData, pair: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    valid_idx = data.prep.folds.split(*pair)[1]
    return data.prep.X[valid_idx], data.prep.y[valid_idx]


def _feature_progress(progress: Progress, label: str):
    """A callback printing about five `feature n/N` lines per fold model."""

    def on_group(done: int, total: int) -> None:
        if done % max(1, total // 5) == 0 or done == total:
            progress.say(f"  {label}: feature {done}/{total}")

    return on_group


def with_aggregates(per_fold: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per-fold rows plus one row per (kind, feature) with fold = -1: the mean and std over all
    folds x repeats, and a t interval from the fold means.

    The repeats of one fold share that fold's baseline score, so they are not independent draws; an
    interval over all folds x repeats as if they were would call pure noise significant. The fold
    means are independent enough (disjoint validation rows): interval = mean +- t(K-1) * sd / sqrt(K).
    """
    keys = ["kind", "feature"]
    fold_means = per_fold.groupby([*keys, "cv_repeat", "fold"], sort=False)["value"].mean()
    spread = fold_means.groupby(level=keys, sort=False).agg(["std", "count"])
    agg = per_fold.groupby(keys, sort=False)["value"].agg(["mean", "std", "count"])
    agg = agg.join(spread.rename(columns={"std": "fold_std", "count": "n_folds"})).reset_index()
    n_folds = agg["n_folds"].to_numpy(dtype="float64")
    t = stats.t.ppf(0.5 + confidence / 2, np.maximum(n_folds - 1, 1))
    half = np.where(n_folds > 1, t * agg["fold_std"].fillna(0.0) / np.sqrt(n_folds), np.nan)
    agg = agg.rename(columns={"mean": "value", "count": "n"}).assign(
        std=agg["std"].fillna(0.0),
        ci_low=agg["mean"] - half,
        ci_high=agg["mean"] + half,
        cv_repeat=-1,
        fold=-1,
        repeat=-1,
        p_value=np.nan,
    )
    per_fold = per_fold.assign(std=np.nan, ci_low=np.nan, ci_high=np.nan, p_value=np.nan, n=1)
    return pd.concat([per_fold, agg], ignore_index=True)[COLUMNS]


def training_importance(reader: RunReader) -> pd.DataFrame:
    """Gain and split per fold from training, re-aggregated with the same columns as the rest."""
    table = reader.read_parquet("importance.parquet")
    per_fold = table[table["fold"] >= 0].rename(columns={"repeat": "cv_repeat"}).assign(repeat=0)
    return with_aggregates(per_fold[["kind", "feature", "cv_repeat", "fold", "repeat", "value"]], 0.95)


def null_importance(
    data: RunData, settings: ImportanceSection, n_jobs: int, progress: Progress, cluster: Cluster | None = None
) -> pd.DataFrame:
    """Gain of models refit on a shuffled target (same folds), against the real models' gain
    at the same number of rounds: per feature a score and an empirical p-value."""
    prep = data.prep
    rounds = min(settings.null_num_boost_round, *(b.current_iteration() for b in data.fitted.boosters))
    spec = train_spec(data.cfg, prep, data.params)
    spec = replace(
        spec,
        num_boost_round=rounds,
        early_stopping_rounds=None,
        params={**spec.params, "num_threads": n_jobs},
        cluster=cluster,
    )
    columns = list(prep.schema.columns)
    real = np.mean([b.feature_importance("gain", iteration=rounds) for b in data.fitted.boosters], axis=0)
    rng = np.random.RandomState(settings.seed)
    null_rows, null_means = [], []
    progress.restart()
    for r in range(settings.null_repeats):
        result = run_cv(prep.X, prep.y[rng.permutation(len(prep.y))], prep.folds, spec)
        gains = result.importance.assign(gain=lambda f: f["gain"].astype("float64"))
        for (cv_repeat, fold), part in gains.groupby(["repeat", "fold"], sort=True):
            null_rows += [("null_gain", c, cv_repeat, fold, r, float(v)) for c, v in zip(columns, part["gain"])]
        null_means.append(gains.groupby("feature", sort=False)["gain"].mean().to_numpy())
        progress.step("null importance", r + 1, settings.null_repeats, f"{rounds} rounds per fold")
    null = np.vstack(null_means)  # (repeats, features): fold-mean gain of each shuffle
    q75 = np.percentile(null, 75, axis=0)
    p_value = (1 + (null >= real[None, :]).sum(axis=0)) / (settings.null_repeats + 1)
    score = np.log(1e-10 + real / (1.0 + q75))
    per_fold = pd.DataFrame(null_rows, columns=["kind", "feature", "cv_repeat", "fold", "repeat", "value"])
    table = with_aggregates(per_fold, settings.confidence)
    agg = table["fold"] == -1
    table.loc[agg, "ci_low"] = np.percentile(null, 100 * (0.5 - settings.confidence / 2), axis=0)
    table.loc[agg, "ci_high"] = np.percentile(null, 100 * (0.5 + settings.confidence / 2), axis=0)
    table.loc[agg, "p_value"] = p_value
    extra = pd.DataFrame(
        {
            "kind": "null_real_gain",
            "feature": columns,
            "value": real,
            "p_value": p_value,
            "std": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
        }
    )
    extra = pd.concat([extra, extra.assign(kind="null_score", value=score)], ignore_index=True)
    extra = extra.assign(cv_repeat=-1, fold=-1, repeat=-1, n=settings.null_repeats)
    return pd.concat([table, extra[COLUMNS]], ignore_index=True)


def aggregated(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The fold = -1 rows of one kind, largest value first."""
    part = table[(table["kind"] == kind) & (table["fold"] == -1)]
    return part.sort_values("value", ascending=False).reset_index(drop=True)


def summary_document(
    data: RunData,
    settings: ImportanceSection,
    groups: list[tuple[str, list[int]]],
    table: pd.DataFrame,
    baselines: list[float],
    share: float,
    seconds: float,
) -> dict[str, Any]:
    """What the report shows: ranked features with intervals, and which are not above zero."""

    def records(kind: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        part = aggregated(table, kind)
        return [{"feature": row.feature, **{f: _num(getattr(row, f)) for f in fields}} for row in part.itertuples()]

    perm = aggregated(table, "permutation")
    doc = {
        "run": data.reader.dir.name,
        "experiment": data.cfg.experiment.name,
        "metric": data.cfg.metric,
        "greater_is_better": GREATER_IS_BETTER[data.cfg.metric],
        "n_models": len(baselines),
        "n_repeats": settings.n_repeats,
        "seed": settings.seed,
        "confidence": settings.confidence,
        "baseline_scores": baselines,
        "rows_predicted_share": share,
        "permutation": records("permutation", ("value", "std", "ci_low", "ci_high", "n")),
        "permutation_groups": records("permutation_group", ("value", "std", "ci_low", "ci_high", "n")),
        "not_above_zero": perm.loc[perm["ci_low"] <= 0, "feature"].tolist(),
        "gain": records("gain", ("value", "std")),
        "split": records("split", ("value", "std")),
        "groups": {name: [data.prep.schema.columns[i] for i in members] for name, members in groups},
        "data_fingerprint": data.prep.data_fingerprint,
        "seconds": seconds,
    }
    if settings.null_repeats:
        doc["null"] = {"repeats": settings.null_repeats, "features": records("null_score", ("value", "p_value"))}
    return doc


def _num(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and np.isnan(value) else value


def output_names(settings: ImportanceSection, has_groups: bool) -> list[str]:
    """The files one computation writes (checked before computing, so a refusal costs nothing)."""
    kinds = (
        ["permutation", "gain", "split"]
        + ["permutation_group"] * has_groups
        + ["null_score"] * bool(settings.null_repeats)
    )
    return ["importance/importance.parquet", "importance/summary.json"] + [f"importance/{k}.png" for k in kinds]


def _check_replace(reader: RunReader, files: list[str], replace_files: bool) -> None:
    existing = [n for n in files if n in reader.files]
    stale = [n for n in reader.files if n.startswith("importance/") and n not in files]
    if existing and not replace_files:
        raise ArtifactError(
            f"{reader.dir} already has importance results ({existing[0]}, ...); pass --replace "
            "to compute them again, earlier results stay untouched otherwise"
        )
    if stale and replace_files:
        raise ArtifactError(
            f"{reader.dir} has importance files that this computation would not rewrite "
            f"({stale}); they would be left stale. Use the same groups and settings, "
            "or compute importance on a fresh copy of the run"
        )
