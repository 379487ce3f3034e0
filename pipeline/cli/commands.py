"""What each `gbpipe` subcommand does once its arguments are parsed: load and check the config at the edge,
then call the stage. The arguments are parser.py's, the exit codes program.py's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Config, load_config, read_params_file
from pipeline.core.budget import Clock, parse_duration
from pipeline.core.errors import EXIT_INTERRUPTED, ConfigError
from pipeline.core.progress import Progress

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.compute.cluster import Cluster


def load(args: argparse.Namespace, name_from_file: bool = False) -> Config:
    """The validated config; its relative paths must stay inside the project (see pipeline.paths)."""
    from pipeline.config.paths import check_config_paths

    cfg = load_config(args.config, args.overrides, name_from_file)
    check_config_paths(cfg)
    return cfg


def progress_of(args: argparse.Namespace) -> Progress:
    return Progress(quiet=getattr(args, "quiet", False))


@contextmanager
def cluster_of(args: argparse.Namespace, cfg: Config | None = None) -> Iterator[Cluster | None]:
    """The Dask cluster of --cluster (else the config's compute.cluster) while the stage runs; None: in-process."""
    from pipeline.compute.cluster import open_cluster

    address = args.cluster
    where = "--cluster"
    if address is None and cfg is not None and cfg.compute is not None and cfg.compute.cluster is not None:
        address, where = cfg.compute.cluster, "compute.cluster"
    with open_cluster(address, where) as cluster:
        if cluster is not None:
            progress_of(args).say(cluster.describe())
        yield cluster


def cmd_data(args: argparse.Namespace) -> int:
    from pipeline.data.fetch import fetch_all

    fetch_all(args.dest, args.source, progress_of(args))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.train.run import train

    if args.features is not None:
        from pipeline.importance.selection import feature_overrides

        args.overrides = [*args.overrides, *feature_overrides(args.features, args.config, args.overrides)]
    cfg = load(args)
    params = read_params_file(args.params) if args.params else None
    if params is not None:
        from pipeline.config.lightgbm_params import check_more_params

        check_more_params(
            params, f"{{key}} in --params file {args.params}", cfg.data.task, cfg.metric, cfg.model.params
        )
    with cluster_of(args, cfg) as cluster:
        folds_from = args.params.parent if args.params else None  # a study folder keeps its final retrain's folds
        run_dir = train(cfg, args.run_id, args.resume, progress_of(args), params, cluster, folds_from)
    print(run_dir)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.predict import predict_file

    if args.chunk_size < 1:
        raise ConfigError(f"--chunk-size must be at least 1, got {args.chunk_size}")
    with cluster_of(args) as cluster:
        summary = predict_file(
            args.run, args.input, args.output, args.chunk_size, progress_of(args), args.allow_version_mismatch, cluster
        )
    progress_of(args).say(f"predicted {summary.rows} rows -> {args.output}")
    return 0


def budget_clock(args: argparse.Namespace) -> Clock:
    """The clock of --time-budget, started now: the imports and the data are part of the budget."""
    return Clock.start(None if args.time_budget is None else parse_duration(args.time_budget))


def cmd_ensemble(args: argparse.Namespace) -> int:
    clock = budget_clock(args)
    from pipeline.ensemble.run import ensemble

    cfg = load(args)
    with cluster_of(args, cfg) as cluster:
        run_dir = ensemble(cfg, args.run_id, args.resume, progress_of(args), not args.no_cache, clock, cluster)
    print(run_dir)
    return 0


def cmd_auto(args: argparse.Namespace) -> int:
    clock = budget_clock(args)
    from pipeline.auto.portfolio import load_portfolio
    from pipeline.auto.run import AutoOptions, auto

    if args.time_budget is None and args.max_trials is None:
        raise ConfigError(
            "gbpipe auto needs a budget: --time-budget (e.g. 10m), --max-trials N (reproducible), or both"
        )
    if args.max_trials is not None and args.max_trials < 0:
        raise ConfigError(f"--max-trials must be 0 or more, got {args.max_trials}")
    cfg, loaded = load(args, name_from_file=True), load_portfolio(args.portfolio)
    with cluster_of(args, cfg) as cluster:
        options = AutoOptions(clock.budget, args.max_trials, args.run_id, args.resume, cluster)
        result = auto(cfg, loaded, options, clock, progress_of(args))
    print(result.run_dir)
    if result.interrupted:
        print(
            f"interrupted: the best complete model so far ({result.selected}) is published in {result.run_dir}, "
            f"ready for predict and report; continue with `gbpipe auto --config {args.config} --resume` and a "
            "time budget",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from pipeline.tune.options import tune_options
    from pipeline.tune.run import tune

    cfg = load(args)
    options = tune_options(
        cfg, args.n_trials, args.timeout, args.workers, args.storage, args.resume, args.new_study, args.study_name
    )
    with cluster_of(args, cfg) as cluster:
        print(tune(cfg, options, progress_of(args), cluster))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.n_boot < 100:
        raise ConfigError(f"--n-boot must be at least 100 for a usable 95% interval, got {args.n_boot}")
    if args.compare:
        if args.mlflow is not None:
            raise ConfigError("--mlflow goes with --run: it logs one run")
        from pipeline.report.compare import compare_runs, leaderboard_markdown, write_comparison

        comparison = compare_runs(args.compare, args.n_boot)
        path = write_comparison(comparison, args.output)
        print(leaderboard_markdown(comparison) + f"compare report: {path}")
        return 0
    if args.output is not None:
        raise ConfigError("--output goes with --compare; `--run` writes into the run folder")
    from pipeline.report.build import headline_text, write_report

    report = write_report(args.run, progress_of(args), args.n_boot)
    print(headline_text(report))
    if args.mlflow is not None:
        from pipeline.report.tracking import log_run, tracking_uri

        print(f"mlflow: run {log_run(report.run_dir, args.mlflow)} in {tracking_uri(args.mlflow)}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from pipeline.report.run_list import list_runs, runs_text

    if args.config is not None:
        cfg = load(args)
        exp_dir = Path(cfg.experiment.runs_dir) / cfg.experiment.name
    else:
        exp_dir = args.experiment_dir
    print(runs_text(list_runs(exp_dir)), end="")
    return 0


def cmd_importance(args: argparse.Namespace) -> int:
    from pipeline.importance.run import run_importance

    with cluster_of(args) as cluster:
        print(run_importance(args.run, args.overrides, progress_of(args), args.replace, cluster) / "importance")
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from pipeline.drift.run import run_drift

    with cluster_of(args) as cluster:
        print(run_drift(args.run, args.input, args.overrides, progress_of(args), args.replace, cluster) / "drift")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from pipeline.importance.selection import run_select

    cfg = load(args)
    with cluster_of(args, cfg) as cluster:
        print(run_select(cfg, args.select_id, progress_of(args), cluster) / "selected_features.json")
    return 0


def write_test_rows(cfg: Config, test: pd.DataFrame | None, path: Path, progress: Progress) -> None:
    """The experiment's test rows (the test cutoff's feature rows, or the test table) without their
    label, as a file `gbpipe predict` reads."""
    from pipeline.core.artifacts import atomic_write_bytes, parquet_bytes

    if test is None:
        where = (
            "test cutoff (features.cutoffs.test)"
            if cfg.features is not None
            else "test table (data.test or data.split_column)"
        )
        raise ConfigError(f"--test-rows: {cfg.experiment.name} has no {where}")
    rows = test.drop(columns=[cfg.data.target], errors="ignore")
    data = parquet_bytes(rows) if path.suffix.lower() in (".parquet", ".pq") else rows.to_csv(index=False).encode()
    atomic_write_bytes(path, data)
    progress.say(f"{len(rows)} test rows written to {path}")


def cmd_features(args: argparse.Namespace) -> int:
    from pipeline.data.feature_cache import cached_features, summary_lines

    cfg, progress = load(args), progress_of(args)
    if args.test_rows is not None:  # refused before the build, not after it
        from pipeline.core.names import check_output_path

        check_output_path(args.test_rows, "--test-rows", (Path(cfg.experiment.runs_dir) / cfg.experiment.name,))
    if cfg.features is None:  # not an error, so `make features train` works for every experiment
        progress.say(
            f"{args.config} has no [features] section: its tables are read as they are; "
            "nothing to build (see configs/retail.toml for a features spec)"
        )
        if args.test_rows is not None:
            from pipeline.data.prepare import experiment_tables

            write_test_rows(cfg, experiment_tables(cfg, progress).test, args.test_rows, progress)
        return 0
    with cluster_of(args, cfg) as cluster:
        cached = cached_features(cfg, progress, cluster)
    summary = cached.table.summary
    if args.test_rows is not None:  # the table just built or read: no second read of the cache
        write_test_rows(cfg, cached.table.test, args.test_rows, progress)
    progress.say(
        f"features: {summary['rows']} rows x {summary['n_features']} features, cutoffs "
        f"{summary['train_cutoffs'][0]}..{summary['train_cutoffs'][-1]}"
        + (f" + test {summary['test_cutoff']}" if summary["test_cutoff"] else "")
        + f"; {summary['excluded_lines_without_entity']} lines without {summary['entity']} excluded"
    )
    for line in summary_lines(summary):
        progress.say(line)
    print(cached.folder)
    return 0
