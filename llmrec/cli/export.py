"""``llmrec export``: a prepared folder in another library's format."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = sub.add_parser("export", help="write a prepared folder's split in another library's format",
                       description="Write the catalogue and the exact train/valid/test split of a prepared folder "
                       "as RecBole atomic files (NAME.inter, NAME.item, NAME.{train,valid,test}.inter; use "
                       "`benchmark_filename: [train, valid, test]` in RecBole).")  # fmt: skip
    p.add_argument("--data", required=True, type=Path, help="a folder written by `llmrec prepare`")
    p.add_argument("--out", required=True, type=Path, help="output folder (written whole or not at all)")
    p.add_argument("--format", choices=("recbole",), default="recbole", help="output format (default: recbole)")
    p.add_argument("--name", help="data set name in the file names (default: from the prepared data's source)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec export``."""
    from llmrec.data.export import to_recbole

    rows = to_recbole(args.data, args.out, args.name, args.overwrite)
    print(f"{args.out}: " + ", ".join(f"{file} {n:,} rows" for file, n in rows.items()))
    return 0
