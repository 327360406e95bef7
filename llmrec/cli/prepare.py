"""``llmrec prepare``: clean, split and render a data set into a prepared folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmrec.data.clean import CleanOptions
from llmrec.options import add_arguments, from_args
from llmrec.prompting.prepare import PrepareOptions
from llmrec.prompting.samples import SampleOptions


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` subcommand."""
    p = sub.add_parser(
        "prepare",
        help="clean, split and render a data set into training/evaluation files",
        description="Load interaction logs, clean them, split them leave-one-out per user and write "
        "catalog.parquet, interactions.parquet, SFT datasets (sft/TASK) and manifest.json.",
    )
    add_arguments(p, PrepareOptions)
    add_arguments(p, SampleOptions)
    add_arguments(p, CleanOptions)
    p.add_argument("--examples", type=int, default=0, metavar="N", help="print N rendered samples per task")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec prepare``."""
    from llmrec.prompting.prepare import prepare

    options = from_args(PrepareOptions, args, clean=from_args(CleanOptions, args), samples=from_args(SampleOptions, args))
    manifest = prepare(options)
    print(
        f"{options.out}: {manifest['users']:,} users, {manifest['items']:,} items, "
        f"{manifest['interactions']:,} interactions "
        f"(train {manifest['splits']['train']:,} / valid {manifest['splits']['valid']:,} / "
        f"test {manifest['splits']['test']:,}; time order: {manifest['time_order']}) in {manifest['seconds']} s"
    )
    for task, counts in manifest["samples"]["counts"].items():
        print(f"  sft/{task}: " + ", ".join(f"{split} {n:,}" for split, n in counts.items()))
    if train := manifest["samples"]["yes_no_labels"].get("train"):
        total = max(1, sum(train.values()))
        print("  yes_no train labels: " + ", ".join(f"{k} {n:,} ({n / total:.0%})" for k, n in train.items()))
    if args.examples > 0:
        show_examples(options.out, list(manifest["samples"]["counts"]), args.examples)
    return 0


def show_examples(folder: Path, tasks: list[str], n: int, split: str = "test") -> None:
    """Print the first ``n`` rendered prompts and completions of each task's ``split``."""
    from llmrec.data import prepared

    for task in tasks:
        rows = prepared.load_sft(folder, task, split)
        if len(rows) == 0:
            print(f"\n=== {task} ({split}): no samples")
        for row in rows.select(range(min(n, len(rows)))):
            print(f"\n=== {task} ({split}) " + "=" * max(0, 60 - len(task)))
            print(row["prompt"] + row["completion"])
