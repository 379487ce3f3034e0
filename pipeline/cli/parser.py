"""The `gbpipe` command line's arguments: one subcommand per stage, each with its options and the command
(commands.py) that runs it; program.py parses and runs them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pipeline.cli.commands as commands


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="experiment TOML file, e.g. configs/adult.toml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set cv.n_splits=10; KEY= (nothing after =) "
        "removes the key, back to its default (repeatable)",
    )


def _section_overrides(parser: argparse.ArgumentParser, section: str, example: str) -> None:
    """--set for a stage that works on a finished run: only its own section may change."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar=f"{section}.KEY=VALUE",
        help=f"override a {section} setting, e.g. --set {section}.{example} (repeatable)",
    )


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print no progress")


def _cluster_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="run the work on a Dask cluster: its scheduler (tcp://host:8786, tls://... for TLS) or local:N to start "
        "N single-threaded worker processes here (overrides compute.cluster; default: in this process). The "
        "results are the same files; README, 'Running on a cluster'",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gbpipe", description="Gradient-boosting pipeline with honest OOF scores.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_args, _) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_args(command)
        command.add_argument(
            "--debug", action="store_true", help="on an unexpected error, show Python's traceback (for a bug report)"
        )
    return parser


# ---- data ----
def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dest", type=Path, default=Path("data/raw"), help="where the datasets go (default data/raw)")
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="folder holding the datasets (default: $GBPIPE_DATA_DIR, else ../shared/data, else download)",
    )
    _common_args(p)


# ---- train ----
def _add_train(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--run-id", default=None, help="name of the run folder (default: UTC time, config hash and a random part)"
    )
    p.add_argument("--resume", action="store_true", help="continue an unfinished run, training only missing folds")
    p.add_argument(
        "--params",
        type=Path,
        default=None,
        help="JSON of LightGBM params (e.g. best_params.json) that override model.params",
    )
    p.add_argument(
        "--features",
        type=Path,
        default=None,
        help="feature list to train on (sets data.features): "
        "a selected_features.json, a selection folder, or runs/<exp>/select for the latest one",
    )
    _cluster_args(p)
    _common_args(p)


# ---- predict ----
def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run folder (or experiment folder: its latest run)")
    p.add_argument(
        "--input", required=True, type=Path, help="CSV or parquet file of rows to predict, or a folder of parts"
    )
    p.add_argument(
        "--output",
        required=True,
        type=Path,
        help="where to write predictions: a .csv or .parquet file, or a new folder (no suffix) of parquet parts "
        "named after the input's",
    )
    p.add_argument("--chunk-size", type=int, default=100_000, help="rows per chunk (bounds memory)")
    p.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help="load a run made with another major version of LightGBM or scikit-learn",
    )
    _cluster_args(p)
    _common_args(p)


# ---- ensemble ----
def _add_ensemble(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--run-id",
        default=None,
        help="name of the run folder (default: UTC time, config hash, a random part and -ensemble)",
    )
    p.add_argument("--resume", action="store_true", help="continue an unfinished ensemble run, reusing its members")
    p.add_argument("--no-cache", action="store_true", help="retrain every member instead of reusing cached ones")
    _time_budget(
        p,
        "wall-clock budget of the whole run, data loading and the comparison included: a member or combiner "
        "starts only when its estimated time (from the members trained so far) and the comparison after it fit "
        "what is left; those that do not are skipped and listed in ensemble/scores.json. The first member, and "
        "the model ensemble.use names, always run",
    )
    _cluster_args(p)
    _common_args(p)


def _time_budget(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--time-budget", default=None, metavar="DURATION", help=help_text)


# ---- auto ----
def _add_auto(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    _time_budget(
        p,
        "wall-clock budget, e.g. 90, 90s, 10m or 1h, data loading and the final predictions included: after the "
        "default LightGBM (which always runs) each step starts only when its estimated time fits what is left. "
        "A time budget is NOT reproducible: which steps fit depends on the machine and its load",
    )
    p.add_argument(
        "--max-trials",
        type=int,
        default=None,
        metavar="N",
        help="tuning trials after the default model, earlier calls' included (default: the portfolio's "
        "max_trials, within the time budget). Without --time-budget the whole search is reproducible: the same "
        "config, seed and N give the same models",
    )
    p.add_argument(
        "--portfolio",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file of the members and settings to try (default: the built-in portfolio; docs/auto.md)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest auto run (or the one --run-id names): a killed one in its own folder, a "
        "finished or interrupted one as a new run that continues its study and reuses its members",
    )
    p.add_argument(
        "--run-id", default=None, help="name of the run folder (default: UTC time, config hash, random part, -auto)"
    )
    _cluster_args(p)
    _common_args(p)


# ---- tune ----
def _add_tune(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--n-trials",
        type=int,
        default=None,
        metavar="N",
        help="finish when the study holds N finished trials, earlier runs' included (default tune.n_trials)."
        " A trial-count budget is reproducible: with one worker, the same seed and N give the same "
        "trials and best parameters",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time budget from the start, data loading included: no trial starts whose estimated duration "
        "(the mean of the study's trials so far) exceeds the time left; the running one finishes. Timeouts are "
        "NOT reproducible: how many trials fit depends on the machine and its load",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes on this machine sharing the study (threads per worker = cores // N; default "
        "tune.workers); trial order, hence results, then depend on timing",
    )
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of the study database, e.g. postgresql+psycopg2://user@host/db for "
        "several machines (each runs `gbpipe tune --storage URL --resume`), the password in PGPASSWORD or "
        "~/.pgpass, never in the URL (one given there is redacted); default: the journal file "
        "runs/<experiment>/tune/<study>/study.journal",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the study: finished trials are kept, trials left running by a killed process are "
        "marked FAIL; refused if the data, folds, search space or metric changed",
    )
    p.add_argument("--new-study", action="store_true", help="delete the study of that name and start over")
    p.add_argument(
        "--study-name",
        default=None,
        help="study name and folder under runs/<exp>/tune/ (default tune.study_name, 'default')",
    )
    p.epilog = (
        "Budgets: --n-trials is reproducible (single worker, same seed); --timeout is not. Outputs in "
        "runs/<experiment>/tune/<study>/: best_params.json (for `gbpipe train --params`), trials.parquet, "
        "tune.json, plots/*.png, manifest.json."
    )
    _cluster_args(p)
    _common_args(p)


# ---- report / runs ----
def _add_report(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--run",
        type=Path,
        help="run folder (or experiment folder: its latest run); writes "
        "report.html, report.json and report/report.md into it",
    )
    what.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="two or more run folders: leaderboard with paired bootstrap differences to the best",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="with --compare: folder for compare.html/.json/.md (default runs/<experiment>/compare/<id>/)",
    )
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument(
        "--mlflow",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="with --run: also log params, scores and the report to MLflow in FOLDER (FOLDER/mlflow.db "
        "and FOLDER/artifacts/; needs the mlflow extra)",
    )
    _common_args(p)


def _add_runs(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="experiment TOML: lists runs/<experiment>/")
    where.add_argument("--experiment-dir", type=Path, help="an experiment folder such as runs/adult")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set experiment.runs_dir=/tmp/runs (repeatable)",
    )


# ---- importance ----
def _add_importance(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run folder (or experiment folder: its latest run)")
    _section_overrides(p, "importance", "n_repeats=10")
    p.add_argument("--replace", action="store_true", help="recompute and replace the run's earlier importance files")
    _cluster_args(p)
    _common_args(p)


# ---- drift ----
def _add_drift(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run folder (or experiment folder: its latest run)")
    p.add_argument(
        "--input",
        type=Path,
        default=None,
        help="CSV or parquet file of the new rows (columns by name, as predict reads them); default: the "
        "experiment's own test rows",
    )
    _section_overrides(p, "drift", "sample_rows=50000")
    p.add_argument("--replace", action="store_true", help="recompute and replace the run's earlier drift files")
    _cluster_args(p)
    _common_args(p)


# ---- select ----
def _add_select(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--select-id", default=None, help="name of the output folder (default: UTC time, config hash and a random part)"
    )
    _cluster_args(p)
    _common_args(p)


# ---- features ----
def _add_features(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--test-rows",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the test cutoff's rows (the input of `gbpipe predict`) to FILE (.parquet or .csv)",
    )
    _cluster_args(p)
    _common_args(p)


COMMANDS = {
    "data": ("copy or download the real datasets into data/raw and verify checksums", _add_data, commands.cmd_data),
    "features": (
        "build (or reuse) the point-in-time feature table of an experiment's [features] spec",
        _add_features,
        commands.cmd_features,
    ),
    "train": ("K-fold OOF LightGBM on an experiment; writes a run folder", _add_train, commands.cmd_train),
    "tune": (
        "Optuna TPE search of LightGBM parameters on the K-fold OOF score (pruned, resumable, parallel); "
        "trial-count budgets are reproducible with one worker, timeouts are not",
        _add_tune,
        commands.cmd_tune,
    ),
    "predict": ("predict new rows with a run's fold models", _add_predict, commands.cmd_predict),
    "ensemble": (
        "train ensemble members on the shared folds and combine them (voting, blending, stacking)",
        _add_ensemble,
        commands.cmd_ensemble,
    ),
    "auto": (
        "the best model a time budget allows: default LightGBM, tuning trials, a portfolio of members and "
        "combiners, each step only if it fits the time left; writes an ensemble run",
        _add_auto,
        commands.cmd_auto,
    ),
    "report": (
        "HTML/JSON/Markdown report of a run (--run), or a leaderboard of runs (--compare)",
        _add_report,
        commands.cmd_report,
    ),
    "runs": ("list an experiment's runs with their headline numbers", _add_runs, commands.cmd_runs),
    "importance": (
        "permutation (per fold, with intervals), gain/split and null importance of a run",
        _add_importance,
        commands.cmd_importance,
    ),
    "drift": (
        "new rows against a run's training rows: PSI, KL and KS per feature, adversarial validation, drift over "
        "cutoffs; writes drift/ into the run",
        _add_drift,
        commands.cmd_drift,
    ),
    "select": (
        "feature selection inside the folds: nested OOF score beside the naive one; writes selected_features.json",
        _add_select,
        commands.cmd_select,
    ),
}
