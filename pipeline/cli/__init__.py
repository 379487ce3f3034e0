"""The `gbpipe` command line: the parser and the exit codes (parser), and what each subcommand does once
its arguments are parsed (commands). It sits above every stage package."""

from .parser import main

__all__ = ["main"]
