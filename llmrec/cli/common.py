"""What several subcommands share: the model-loading flags and quiet library logging."""

from __future__ import annotations

import argparse

from llmrec.decoding.loading import LoadOptions
from llmrec.options import add_arguments, from_args


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """--model, --data, --backend, --device (``LoadOptions``)."""
    add_arguments(parser, LoadOptions)


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The ``LoadOptions`` given on the command line."""
    return from_args(LoadOptions, args)


def quiet_loading() -> None:
    """No per-tensor loading bars: recommend/predict print results (and one-line errors) only."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
