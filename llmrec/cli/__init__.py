"""The ``llmrec`` command: one entry point, one small module per subcommand.

Each subcommand module has ``register(subparsers)`` and a ``run(args) -> int``; this module only
builds the parser from them and turns user-fixable errors into one line and exit code 2.
Subcommand modules never import each other or this module. Heavy libraries are imported inside
``run`` so that ``llmrec --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from llmrec import __version__
from llmrec.cli import (
    env,
    evaluate,
    export,
    predict,
    prepare,
    quickstart,
    recommend,
    serve,
    train,
    tune,
)
from llmrec.environment import silence_known_deprecations
from llmrec.errors import LlmrecError, LlmrecWarning

COMMANDS = (prepare, train, tune, recommend, predict, evaluate, serve, export, quickstart, env)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands register themselves)."""
    parser = argparse.ArgumentParser(
        prog="llmrec", description="Recommendations from a generative LLM, decoded only over your catalogue."
    )
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """llmrec's own warnings as one line on stderr; others as Python prints them."""
    if issubclass(category, LlmrecWarning):
        print(f"llmrec: warning: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code. User-fixable errors are one line on stderr, exit 2."""
    args = build_parser().parse_args(argv)
    silence_known_deprecations()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return args.run(args)
    except LlmrecError as exc:
        print(f"llmrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmrec: interrupted", file=sys.stderr)
        return 130
