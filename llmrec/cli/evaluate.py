"""``llmrec evaluate`` and ``llmrec evaluate-merge``: offline metrics of llmrec and baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmrec.cli.common import quiet_loading
from llmrec.evaluation.evaluate import EvaluateOptions
from llmrec.options import add_arguments, from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``evaluate-merge`` subcommands."""
    p = sub.add_parser(
        "evaluate",
        help="offline metrics of llmrec and classical baselines on the same split and users",
        description="Leave-one-out evaluation: llmrec's top-K over the whole catalogue, yes/no and candidate "
        "ranking, against popularity, item-kNN and SASRec fitted on the same train events. Writes report.json, "
        "report.md, plots and per-user predictions.",
    )
    add_arguments(p, EvaluateOptions)
    p.set_defaults(run=run)
    m = sub.add_parser("evaluate-merge", help="merge evaluate shards into one report",
                       description="Concatenate the per-user predictions of evaluate shards and recompute every metric.")  # fmt: skip
    m.add_argument("shards", nargs="+", type=Path, help="folders written by evaluate --shard i/n")
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--common-users", action="store_true",
                   help="keep only the users every system was scored on (e.g. baselines over all users, llmrec over a sample)")  # fmt: skip
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(run=run_merge)


def print_report(out: Path, report: dict) -> None:
    """The headline metrics of each system, one line each."""
    print(f"{out}: {report['config']['users_evaluated']:,} users, {report['config']['split']} split")
    for name, m in report["systems"].items():
        keys = [k for k in ("hr@10", "ndcg@10", "mrr@10", "valid_rate", "auc", "rank_hr@1") if k in m]
        print(f"  {name:<11} " + "  ".join(f"{k} {m[k]:.4f}" for k in keys))


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec evaluate``."""
    from llmrec.evaluation.evaluate import evaluate

    options = from_args(EvaluateOptions, args)
    quiet_loading()
    print_report(options.out, evaluate(options))
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """Run ``llmrec evaluate-merge``."""
    from llmrec.evaluation.merge import merge

    print_report(args.out, merge(args.shards, args.out, args.overwrite, args.common_users))
    return 0
