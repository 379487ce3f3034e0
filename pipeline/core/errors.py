"""Error classes of gbpipe; each maps to one CLI exit code."""

from __future__ import annotations


class GbpipeError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""

    exit_code = 1


class ConfigError(GbpipeError, ValueError):
    """The experiment config or the command line is invalid (exit 2)."""

    exit_code = 2


class DataError(GbpipeError, ValueError):
    """An input table breaks a rule: missing column, bad target, empty file (exit 3)."""

    exit_code = 3


class ArtifactError(GbpipeError):
    """A run folder's file is missing, altered or made by incompatible versions (exit 4)."""

    exit_code = 4


EXIT_INTERRUPTED = 130
EXIT_BUG = 1  # an unexpected exception: a defect of gbpipe, never the user's input
