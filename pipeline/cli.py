"""The `gbpipe` command line: one subcommand per stage.

Exit codes: 0 ok, 2 usage or config, 3 data validation, 4 artifact integrity, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings
from pathlib import Path

from .config import Config, load_config
from .errors import EXIT_INTERRUPTED, ConfigError, GbpipeError
from .progress import Progress


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="experiment TOML file, e.g. configs/adult.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set cv.n_splits=10 (repeatable)")


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print no progress")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gbpipe", description="Gradient-boosting pipeline with honest OOF scores.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def progress_of(args: argparse.Namespace) -> Progress:
    return Progress(quiet=getattr(args, "quiet", False))


# ---- data ----
def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dest", type=Path, default=Path("data/raw"), help="where the datasets go (default data/raw)")
    p.add_argument("--source", type=Path, default=None,
                   help="folder holding the datasets (default: $GBPIPE_DATA_DIR, else ../shared/data, else download)")
    _common_args(p)


def _cmd_data(args: argparse.Namespace) -> int:
    from .datasets import fetch_all

    fetch_all(args.dest, args.source, progress_of(args))
    return 0


# ---- train ----
def _add_train(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--run-id", default=None, help="name of the run folder (default: UTC time + config hash)")
    p.add_argument("--resume", action="store_true", help="continue an unfinished run, training only missing folds")
    p.add_argument("--params", type=Path, default=None, help="JSON of LightGBM params (e.g. best_params.json) "
                   "that override model.params")
    _common_args(p)


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    cfg = load(args)
    params = _read_params(args.params) if args.params else None
    run_dir = train(cfg, args.run_id, args.resume, progress_of(args), params)
    print(run_dir)
    return 0


def _read_params(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--params file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--params file {path} is not valid JSON: {exc}") from None
    params = obj.get("params", obj) if isinstance(obj, dict) else None
    if not isinstance(params, dict):
        raise ConfigError(f"--params file {path} must hold a JSON object of LightGBM parameters")
    return params


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


COMMANDS = {
    "data": ("copy or download the real datasets into data/raw and verify checksums", _add_data, _cmd_data),
    "train": ("K-fold OOF LightGBM on an experiment; writes a run folder", _add_train, _cmd_train),
    "predict": ("predict new rows with a run's fold models", _add_predict, _cmd_predict),
}


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"warning: {message}", file=sys.stderr)


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting (so tests can call it)."""
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
