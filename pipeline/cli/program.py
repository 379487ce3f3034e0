"""The `gbpipe` program: parse the command line, run the command, and turn what went wrong into an exit code and
one message.

Exit codes: 0 ok, 1 a gbpipe bug (the traceback with --debug), 2 usage or config, 3 data validation, 4 artifact
integrity, 130 interrupted.
"""

from __future__ import annotations

import signal
import sys
import warnings

from features import configure_polars_allocator
from pipeline.core.errors import EXIT_BUG, EXIT_INTERRUPTED, GbpipeError

from .parser import COMMANDS, build_parser


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
    except Exception as exc:  # a bug of gbpipe's, not the user's: no traceback unless asked for
        if args.debug:
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc}. This is a gbpipe bug, not a problem with your input; "
            "nothing was published. Rerun with --debug for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_BUG
    finally:
        signal.signal(signal.SIGTERM, previous)
