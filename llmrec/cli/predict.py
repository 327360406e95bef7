"""``llmrec predict``: batch answers for a JSONL file of requests (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmrec.cli.common import add_load_options, load_options, quiet_loading
from llmrec.decoding.predict import PREDICT_TASKS
from llmrec.errors import LlmrecError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = sub.add_parser(
        "predict",
        help="batch answers for a JSONL file of requests (resumable)",
        description="Answer every request of --input (one JSON object a line: id, history, and target or "
        "candidates) into --output. Re-running skips ids already answered; a bad line is reported and skipped.",
    )
    add_load_options(p)
    p.add_argument("--input", required=True, type=Path, help="requests, JSONL")
    p.add_argument("--output", required=True, type=Path, help="answers, JSONL (appended; existing ids skipped)")
    p.add_argument("--task", required=True, choices=PREDICT_TASKS)
    p.add_argument("-k", type=int, default=10, help="next_item: items per request unless it says k (default: 10)")
    p.add_argument("--batch-size", type=int, default=8, help="requests per model batch (default: 8)")
    p.add_argument("--unknown-items", choices=("keep", "drop", "error"), default="keep",
                   help="history items outside the catalogue: keep them in the prompt as text, drop them, or skip the "
                        "request (default: keep; only answers are always catalogue items)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec predict``."""
    from llmrec.decoding.predict import run_predict
    from llmrec.decoding.recommender import Recommender

    if args.k < 1 or args.batch_size < 1:
        raise LlmrecError("-k and --batch-size must be >= 1")
    if not args.input.is_file():
        raise LlmrecError(f"{args.input}: no such file")
    quiet_loading()
    load = load_options(args)
    rec = Recommender.load(load.model, load.data, load.backend, load.device, args.batch_size)
    counts = run_predict(rec, args.task, args.input, args.output, args.k, args.batch_size, not args.no_progress,
                         args.unknown_items)  # fmt: skip
    print(
        f"{args.output}: {counts['answered']} answered, {counts['skipped_done']} already there, "
        f"{counts['bad']} bad request(s) skipped"
    )
    return 0
