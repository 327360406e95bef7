"""``llmrec env``: versions, devices, bf16 support and the cache, the block to paste into a bug report."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``env`` subcommand."""
    p = sub.add_parser("env", help="versions, devices, bf16 support and cache dir (paste it into a bug report)",
                       description="Print the versions of llmrec's stack, the devices torch sees and whether they "
                       "compute in bf16, the cache folder, and whether the embedded model is converted.")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec env``."""
    import json

    from llmrec.environment import format_report, report

    info = report()
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0
