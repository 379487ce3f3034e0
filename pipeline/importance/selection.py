"""`gbpipe select`: feature selection whose score is honest by construction.

For each outer fold of the experiment, the whole procedure (pipeline.selectors) runs on that
fold's training rows only; a model on the selected columns is fit on the same rows (early-stopped
on a split of them) and predicts the fold's validation rows. The OOF score of those predictions is
the nested score. Beside it: the naive score (select once on all rows, then cross-validate on the
same folds) and the score with all features, so the optimism of selecting on all data shows.
The final list (`selected_features.json`, for `gbpipe train --features`) is the one chosen on all rows.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import Config
from pipeline.config.sections import SelectSection, repeated
from pipeline.core.artifacts import json_bytes
from pipeline.core.errors import ConfigError, DataError
from pipeline.core.metrics import GREATER_IS_BETTER
from pipeline.core.names import check_run_id
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import new_run_id, publish_files, staging_dir
from pipeline.data.prepare import Prepared, prepare
from pipeline.engine.cv import run_cv
from pipeline.engine.fold import build_dataset, train_fold
from pipeline.engine.oof import OOFAccumulator
from pipeline.engine.spec import TrainSpec, train_spec

from .selectors import SelectContext, Selection, select_columns, subset_spec

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

STAGE = "select"


def run_select(
    cfg: Config, select_id: str | None = None, progress: Progress = QUIET, cluster: Cluster | None = None
) -> Path:
    """Nested selection, naive selection and the all-features baseline; returns the output folder. On a
    `cluster` every selection fit's folds train as tasks there."""
    started = time.perf_counter()
    name = check_run_id(select_id, "--select-id") if select_id else new_run_id(cfg.hash())
    out_dir = Path(cfg.experiment.runs_dir) / cfg.experiment.name / STAGE / name
    if out_dir.exists():
        raise ConfigError(
            f"selection folder {out_dir} already exists and is never overwritten; pass another "
            "--select-id or leave it out to get a new one"
        )
    if staging_dir(out_dir).exists():
        raise ConfigError(
            f"an unfinished selection is in {staging_dir(out_dir)}; delete it or pass another --select-id"
        )
    prep = prepare(cfg, progress)
    ctx = select_context(cfg, prep, cluster)
    nested = nested_selection(prep, ctx, progress)
    progress.say("select: naive selection on all rows with the experiment's folds (final list, naive score)")
    # The naive procedure as usually done: select by the CV score on the experiment's folds, report
    # that CV score. It is the CV score of the chosen columns on those folds (same fits as cv_score).
    final = select_columns(prep.X, prep.y, np.arange(len(prep.y)), ctx, prep.folds)
    naive_score = final.inner_score
    all_score = cv_score(prep, ctx.spec, tuple(range(prep.X.shape[1])))
    doc = selection_document(cfg, prep, ctx, nested, final, naive_score, all_score, time.perf_counter() - started)
    names = [prep.schema.columns[c] for c in final.columns]
    features_doc = {
        "features": names,
        "n_features": len(names),
        "experiment": cfg.experiment.name,
        "select_id": out_dir.name,
        "metric": cfg.metric,
        "nested_oof_score": doc["nested_oof_score"],
        "naive_oof_score": naive_score,
        "all_features_oof_score": all_score,
        "data_fingerprint": prep.data_fingerprint,
    }
    publish_files(
        out_dir,
        {"selected_features.json": json_bytes(features_doc), "selection.json": json_bytes(doc)},
        STAGE,
        {
            "experiment": cfg.experiment.name,
            "select_id": out_dir.name,
            "config_hash": cfg.hash(),
            "data_fingerprint": prep.data_fingerprint,
        },
        update_latest=True,
    )
    progress.say(
        f"{cfg.metric}: nested OOF {doc['nested_oof_score']:.5f}, naive {naive_score:.5f}, all features "
        f"{all_score:.5f}; {len(names)} of {prep.X.shape[1]} features kept -> {out_dir}"
    )
    return out_dir


def select_context(cfg: Config, prep: Prepared, cluster: Cluster | None = None) -> SelectContext:
    """Settings and the engine's spec for selection fits (early stopping on an inner split)."""
    settings = cfg.select or SelectSection()
    spec = train_spec(cfg, prep)
    spec = replace(
        spec,
        cluster=cluster,
        early_stopping="inner",
        num_boost_round=min(spec.num_boost_round, settings.num_boost_round or spec.num_boost_round),
    )
    train = prep.tables.train
    group_col = cfg.cv.group if cfg.splitter in ("group", "stratified_group") else None
    time_col = cfg.cv.time if cfg.splitter == "time" else None
    return SelectContext(
        settings,
        spec,
        tuple(prep.schema.columns),
        tuple(prep.schema.kinds[c] == "numeric" for c in prep.schema.columns),
        cfg.splitter,
        train[group_col].to_numpy() if group_col else None,
        train[time_col].to_numpy() if time_col else None,
        cfg.time_gap,
    )


def nested_selection(prep: Prepared, ctx: SelectContext, progress: Progress) -> dict[str, Any]:
    """Select inside each outer training fold, fit there, predict the fold: the honest OOF."""
    oof = OOFAccumulator(len(prep.y), ctx.spec.task, ctx.spec.num_class)
    folds = []
    pairs = prep.folds.pairs()
    progress.restart()
    for done, (r, k) in enumerate(pairs, start=1):
        train_idx, valid_idx = prep.folds.split(r, k)
        chosen = select_columns(prep.X, prep.y, train_idx, ctx)
        valid_pred, valid_score = fit_and_predict(prep, ctx.spec, chosen.columns, train_idx, valid_idx, r, k)
        oof.add(valid_idx, valid_pred)
        folds.append({"cv_repeat": r, "fold": k, **_selection_record(chosen, ctx), "valid_score": valid_score})
        progress.step(
            "select outer fold",
            done,
            len(pairs),
            f"{len(chosen.columns)} features kept  inner {ctx.spec.metric} {chosen.inner_score:.5f}  "
            f"valid {valid_score:.5f}",
        )
    return {"oof_score": oof.score(ctx.spec.metric, prep.y), "folds": folds}


def fit_and_predict(
    prep: Prepared,
    spec: TrainSpec,
    columns: tuple[int, ...],
    train_idx: np.ndarray,
    valid_idx: np.ndarray,
    repeat: int,
    fold: int,
) -> tuple[np.ndarray, float]:
    """Fit on train_idx (early stopping on a split of them) with the columns; predict valid_idx."""
    Xs = np.ascontiguousarray(prep.X[:, columns])
    sub = subset_spec(spec, columns)
    output = train_fold(build_dataset(Xs, prep.y, sub), prep.y, train_idx, valid_idx, sub, Xs, repeat, fold)
    return output.valid_pred, output.result.score


def cv_score(prep: Prepared, spec: TrainSpec, columns: tuple[int, ...]) -> float:
    """OOF score of the experiment's folds with these columns (same fits as the nested outer ones)."""
    return run_cv(np.ascontiguousarray(prep.X[:, columns]), prep.y, prep.folds, subset_spec(spec, columns)).oof_score


def _selection_record(chosen: Selection, ctx: SelectContext) -> dict[str, Any]:
    names = ctx.columns
    return {
        "features": [names[c] for c in chosen.columns],
        "n_features": len(chosen.columns),
        "inner_score": chosen.inner_score,
        "dropped": {reason: [names[c] for c in cols] for reason, cols in chosen.dropped.items()},
        "rounds": [{**rd, "dropped": [names[c] for c in rd["dropped"]]} for rd in chosen.rounds],
    }


def stability(fold_features: list[list[str]], columns: tuple[str, ...]) -> tuple[dict[str, float], float]:
    """Share of outer folds that kept each column, and the mean Jaccard index between folds' sets."""
    sets = [set(f) for f in fold_features]
    share = {c: sum(c in s for s in sets) / len(sets) for c in columns}
    pairs = list(itertools.combinations(sets, 2))
    jaccard = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs]
    return share, float(np.mean(jaccard)) if jaccard else 1.0


def selection_document(
    cfg: Config,
    prep: Prepared,
    ctx: SelectContext,
    nested: dict[str, Any],
    final: Selection,
    naive_score: float,
    all_score: float,
    seconds: float,
) -> dict[str, Any]:
    share, jaccard = stability([f["features"] for f in nested["folds"]], ctx.columns)
    sign = 1.0 if GREATER_IS_BETTER[cfg.metric] else -1.0
    return {
        "experiment": cfg.experiment.name,
        "metric": cfg.metric,
        "greater_is_better": GREATER_IS_BETTER[cfg.metric],
        "nested_oof_score": nested["oof_score"],
        "naive_oof_score": naive_score,
        "all_features_oof_score": all_score,
        "optimism": sign * (naive_score - nested["oof_score"]),
        "optimism_note": "naive minus nested score, signed so that positive means the naive procedure looks "
        "better than the honest nested one",
        "n_features_total": len(ctx.columns),
        "final": _selection_record(final, ctx),
        "folds": nested["folds"],
        "stability": share,
        "stability_mean_jaccard": jaccard,
        "settings": ctx.settings.model_dump(mode="json"),
        "early_stopping": "inner (a split of each training set)",
        "num_boost_round": ctx.spec.num_boost_round,
        "splitter": cfg.splitter,
        "n_splits": prep.folds.n_splits,
        "n_repeats": prep.folds.n_repeats,
        "data_fingerprint": prep.data_fingerprint,
        "config_hash": cfg.hash(),
        "seconds": seconds,
    }


def read_feature_list(path: Path) -> list[str]:
    """Feature names from a selected_features.json ({"features": [...]}), a JSON list, or text lines.

    A folder is a selection output (checked against its manifest), or runs/<exp>/select whose
    LATEST names the newest one.
    """
    import json

    from pipeline.core.run_folder import RunReader

    path = Path(path)
    try:
        if path.is_dir():
            text = RunReader(path, allow_version_mismatch=True).read_bytes("selected_features.json").decode()
        else:
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--features file {path} not found; make one with `gbpipe select`") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--features file {path} is not UTF-8 text") from None
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--features file {path} is not valid JSON: {exc}") from None
        names = obj.get("features") if isinstance(obj, dict) else obj
    else:
        names = [line.strip() for line in stripped.splitlines() if line.strip()]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f'--features file {path} must list feature names: {{"features": ["a", ...]}}, '
            "a JSON list of strings, or one name per line"
        )
    dupes = repeated(names)
    if dupes:
        raise DataError(f"--features file {path} names {len(dupes)} columns twice: {dupes}")
    return names


def feature_overrides(path: Path, config_path: Path, overrides: list[str]) -> list[str]:
    """`--set` items that make the config train on the file's features: data.features, and
    data.categorical cut to the listed features (it may only name features)."""
    import json

    from pipeline.config import load_config

    names = read_feature_list(path)
    items = [f"data.features={json.dumps(names, ensure_ascii=False)}"]
    categorical = load_config(config_path, overrides).data.categorical
    if categorical is not None:
        kept = [c for c in categorical if c in names]
        items.append(f"data.categorical={json.dumps(kept, ensure_ascii=False)}")
    return items
