"""The `gbpipe` command line: one subcommand per stage.

Exit codes: 0 ok, 2 usage or config, 3 data validation, 4 artifact integrity, 130 interrupted.
"""
from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from features import configure_polars_allocator
from pipeline.config import Config, load_config, read_params_file
from pipeline.core.errors import EXIT_INTERRUPTED, ConfigError, GbpipeError
from pipeline.core.progress import Progress

if TYPE_CHECKING:
    import pandas as pd


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="experiment TOML file, e.g. configs/adult.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set cv.n_splits=10; KEY= (nothing after =) "
                             "removes the key, back to its default (repeatable)")


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print no progress")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gbpipe", description="Gradient-boosting pipeline with honest OOF scores.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def load(args: argparse.Namespace) -> Config:
    """The validated config; its relative paths must stay inside the project (see pipeline.paths)."""
    from pipeline.config.paths import check_config_paths

    cfg = load_config(args.config, args.overrides)
    check_config_paths(cfg)
    return cfg


def progress_of(args: argparse.Namespace) -> Progress:
    return Progress(quiet=getattr(args, "quiet", False))


# ---- data ----
def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dest", type=Path, default=Path("data/raw"), help="where the datasets go (default data/raw)")
    p.add_argument("--source", type=Path, default=None,
                   help="folder holding the datasets (default: $GBPIPE_DATA_DIR, else ../shared/data, else download)")
    _common_args(p)


def _cmd_data(args: argparse.Namespace) -> int:
    from pipeline.data.fetch import fetch_all

    fetch_all(args.dest, args.source, progress_of(args))
    return 0


# ---- train ----
def _add_train(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--run-id", default=None, help="name of the run folder (default: UTC time + config hash)")
    p.add_argument("--resume", action="store_true", help="continue an unfinished run, training only missing folds")
    p.add_argument("--params", type=Path, default=None, help="JSON of LightGBM params (e.g. best_params.json) "
                   "that override model.params")
    p.add_argument("--features", type=Path, default=None, help="feature list to train on (sets data.features): "
                   "a selected_features.json, a selection folder, or runs/<exp>/select for the latest one")
    _common_args(p)


def _cmd_train(args: argparse.Namespace) -> int:
    from pipeline.train.run import train

    if args.features is not None:
        from pipeline.importance.selection import feature_overrides

        args.overrides = [*args.overrides, *feature_overrides(args.features, args.config, args.overrides)]
    cfg = load(args)
    params = read_params_file(args.params) if args.params else None
    run_dir = train(cfg, args.run_id, args.resume, progress_of(args), params)
    print(run_dir)
    return 0


# ---- predict ----
def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run folder (or experiment folder: its latest run)")
    p.add_argument("--input", required=True, type=Path, help="CSV or parquet file of rows to predict")
    p.add_argument("--output", required=True, type=Path, help="where to write predictions (.csv or .parquet)")
    p.add_argument("--chunk-size", type=int, default=100_000, help="rows per chunk (bounds memory)")
    p.add_argument("--allow-version-mismatch", action="store_true",
                   help="load a run made with another major version of LightGBM or scikit-learn")
    _common_args(p)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict_file

    if args.chunk_size < 1:
        raise ConfigError(f"--chunk-size must be at least 1, got {args.chunk_size}")
    summary = predict_file(args.run, args.input, args.output, args.chunk_size, progress_of(args),
                           args.allow_version_mismatch)
    progress_of(args).say(f"predicted {summary.rows} rows -> {args.output}")
    return 0


# ---- ensemble ----
def _add_ensemble(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--run-id", default=None, help="name of the run folder (default: UTC time + config hash + -ensemble)")
    p.add_argument("--resume", action="store_true", help="continue an unfinished ensemble run, reusing its members")
    p.add_argument("--no-cache", action="store_true", help="retrain every member instead of reusing cached ones")
    _common_args(p)


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from pipeline.ensemble.run import ensemble

    run_dir = ensemble(load(args), args.run_id, args.resume, progress_of(args), use_cache=not args.no_cache)
    print(run_dir)
    return 0


# ---- tune ----
def _add_tune(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--n-trials", type=int, default=None, metavar="N",
                   help="finish when the study holds N finished trials, earlier runs' included (default tune.n_trials)."
                   " A trial-count budget is reproducible: with one worker, the same seed and N give the same "
                   "trials and best parameters")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="start no new trial after this many seconds (the running one finishes). Timeouts are NOT "
                   "reproducible: how many trials fit depends on the machine and its load")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes on this machine sharing the study (threads per worker = cores // N; default "
                   "tune.workers); trial order, hence results, then depend on timing")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="SQLAlchemy URL of the study database, e.g. postgresql+psycopg2://user:pw@host/db for "
                   "several machines (each runs `gbpipe tune --storage URL --resume`); default: the journal file "
                   "runs/<experiment>/tune/<study>/study.journal")
    p.add_argument("--resume", action="store_true",
                   help="continue the study: finished trials are kept, trials left running by a killed process are "
                   "marked FAIL; refused if the data, folds, search space or metric changed")
    p.add_argument("--new-study", action="store_true", help="delete the study of that name and start over")
    p.add_argument("--study-name", default=None, help="study name and folder under runs/<exp>/tune/ "
                   "(default tune.study_name, 'default')")
    p.epilog = ("Budgets: --n-trials is reproducible (single worker, same seed); --timeout is not. Outputs in "
                "runs/<experiment>/tune/<study>/: best_params.json (for `gbpipe train --params`), trials.parquet, "
                "tune.json, plots/*.png, manifest.json.")
    _common_args(p)


def _cmd_tune(args: argparse.Namespace) -> int:
    from pipeline.tune.run import tune, tune_options

    cfg = load(args)
    options = tune_options(cfg, args.n_trials, args.timeout, args.workers, args.storage, args.resume,
                           args.new_study, args.study_name)
    print(tune(cfg, options, progress_of(args)))
    return 0


# ---- report / runs ----
def _add_report(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", type=Path, help="run folder (or experiment folder: its latest run); writes "
                      "report.html, report.json and report/report.md into it")
    what.add_argument("--compare", type=Path, nargs="+", metavar="RUN",
                      help="two or more run folders: leaderboard with paired bootstrap differences to the best")
    p.add_argument("--output", type=Path, default=None, help="with --compare: folder for compare.html/.json/.md "
                   "(default runs/<experiment>/compare/<id>/)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument("--mlflow", type=Path, default=None, metavar="FOLDER",
                   help="with --run: also log params, scores and the report to MLflow in FOLDER (FOLDER/mlflow.db "
                   "and FOLDER/artifacts/; needs the mlflow extra)")
    _common_args(p)


def _cmd_report(args: argparse.Namespace) -> int:
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


def _add_runs(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="experiment TOML: lists runs/<experiment>/")
    where.add_argument("--experiment-dir", type=Path, help="an experiment folder such as runs/adult")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set experiment.runs_dir=/tmp/runs (repeatable)")


def _cmd_runs(args: argparse.Namespace) -> int:
    from pipeline.report.compare import list_runs, runs_text

    if args.config is not None:
        cfg = load(args)
        exp_dir = Path(cfg.experiment.runs_dir) / cfg.experiment.name
    else:
        exp_dir = args.experiment_dir
    print(runs_text(list_runs(exp_dir)), end="")
    return 0


# ---- importance ----
def _add_importance(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run folder (or experiment folder: its latest run)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="importance.KEY=VALUE",
                   help="override an importance setting, e.g. --set importance.n_repeats=10 (repeatable)")
    p.add_argument("--replace", action="store_true", help="recompute and replace the run's earlier importance files")
    _common_args(p)


def _cmd_importance(args: argparse.Namespace) -> int:
    from pipeline.importance.run import run_importance

    print(run_importance(args.run, args.overrides, progress_of(args), args.replace) / "importance")
    return 0


# ---- select ----
def _add_select(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--select-id", default=None, help="name of the output folder (default: UTC time + config hash)")
    _common_args(p)


def _cmd_select(args: argparse.Namespace) -> int:
    from pipeline.importance.selection import run_select

    print(run_select(load(args), args.select_id, progress_of(args)) / "selected_features.json")
    return 0


# ---- features ----
def _add_features(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--test-rows", type=Path, default=None, metavar="FILE",
                   help="also write the test cutoff's rows (the input of `gbpipe predict`) to FILE (.parquet or .csv)")
    _common_args(p)


def _write_test_rows(cfg: Config, test: pd.DataFrame | None, path: Path, progress: Progress) -> None:
    """The experiment's test rows (the test cutoff's feature rows, or the test table) without their
    label, as a file `gbpipe predict` reads."""
    from pipeline.core.artifacts import atomic_write_bytes, parquet_bytes

    if test is None:
        where = "test cutoff (features.cutoffs.test)" if cfg.features is not None else "test table (data.test or data.split_column)"
        raise ConfigError(f"--test-rows: {cfg.experiment.name} has no {where}")
    rows = test.drop(columns=[cfg.data.target], errors="ignore")
    data = parquet_bytes(rows) if path.suffix.lower() in (".parquet", ".pq") else rows.to_csv(index=False).encode()
    atomic_write_bytes(path, data)
    progress.say(f"{len(rows)} test rows written to {path}")


def _cmd_features(args: argparse.Namespace) -> int:
    from pipeline.data.feature_cache import cached_features, summary_lines

    cfg, progress = load(args), progress_of(args)
    if cfg.features is None:  # not an error, so `make features train` works for every experiment
        progress.say(f"{args.config} has no [features] section: its tables are read as they are; "
                     "nothing to build (see configs/retail.toml for a features spec)")
        if args.test_rows is not None:
            from pipeline.data.prepare import experiment_tables

            _write_test_rows(cfg, experiment_tables(cfg, progress).test, args.test_rows, progress)
        return 0
    cached = cached_features(cfg, progress)
    summary = cached.table.summary
    if args.test_rows is not None:  # the table just built or read: no second read of the cache
        _write_test_rows(cfg, cached.table.test, args.test_rows, progress)
    progress.say(f"features: {summary['rows']} rows x {summary['n_features']} features, cutoffs "
                 f"{summary['train_cutoffs'][0]}..{summary['train_cutoffs'][-1]}"
                 + (f" + test {summary['test_cutoff']}" if summary["test_cutoff"] else "")
                 + f"; {summary['excluded_lines_without_entity']} lines without {summary['entity']} excluded")
    for line in summary_lines(summary):
        progress.say(line)
    print(cached.folder)
    return 0


COMMANDS = {
    "data": ("copy or download the real datasets into data/raw and verify checksums", _add_data, _cmd_data),
    "features": ("build (or reuse) the point-in-time feature table of an experiment's [features] spec",
                 _add_features, _cmd_features),
    "train": ("K-fold OOF LightGBM on an experiment; writes a run folder", _add_train, _cmd_train),
    "tune": ("Optuna TPE search of LightGBM parameters on the K-fold OOF score (pruned, resumable, parallel); "
             "trial-count budgets are reproducible with one worker, timeouts are not", _add_tune, _cmd_tune),
    "predict": ("predict new rows with a run's fold models", _add_predict, _cmd_predict),
    "ensemble": ("train ensemble members on the shared folds and combine them (voting, blending, stacking)",
                 _add_ensemble, _cmd_ensemble),
    "report": ("HTML/JSON/Markdown report of a run (--run), or a leaderboard of runs (--compare)",
               _add_report, _cmd_report),
    "runs": ("list an experiment's runs with their headline numbers", _add_runs, _cmd_runs),
    "importance": ("permutation (per fold, with intervals), gain/split and null importance of a run",
                   _add_importance, _cmd_importance),
    "select": ("feature selection inside the folds: nested OOF score beside the naive one; writes "
               "selected_features.json", _add_select, _cmd_select),
}


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"warning: {message}", file=sys.stderr)


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting (so tests can call it)."""
    configure_polars_allocator()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return COMMANDS[args.command][2](args)
    except GbpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: no partial file was written; finished folds are kept for --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
