"""The `gbpipe` command line: the program and its exit codes (program), the arguments (parser), and what
each subcommand does once its arguments are parsed (commands). It sits above every stage package."""

from .program import main

__all__ = ["main"]
