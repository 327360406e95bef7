"""``llmrec quickstart``: prepare, train, evaluate and recommend on the embedded data, printed step by step."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from llmrec.cli import evaluate, prepare, recommend, train


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``quickstart`` subcommand."""
    p = sub.add_parser(
        "quickstart",
        help="the whole path in minutes: prepare, train, evaluate, recommend (embedded data or yours)",
        description="Prepare a data set (default: the embedded ml-latest-small; --data and --columns as for "
        "prepare), train the quick recipe on the embedded SmolLM2 with the tasks the data supports, evaluate it "
        "against popularity and item-kNN on a sample of users, and recommend with explanations for one user. "
        "About 10 minutes on a 2-core CPU for ml-latest-small.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="folder for every output")
    p.add_argument("--data", help="data set name or path, as prepare takes it (default: ml-latest-small)")
    p.add_argument("--columns", help="as prepare's --columns, for your own CSV/JSONL/Parquet log")
    p.add_argument("--items", help="as prepare's --items: a separate items table")
    p.add_argument("--format", help="as prepare's --format: force a loader")
    p.add_argument("--users", type=int, default=10, help="users evaluated (default: 10; ~10 s each on 2 CPU cores)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--base", help="base model to finetune: HF id or local folder (default: the embedded SmolLM2)")
    p.set_defaults(run=run)


def _runner() -> Callable[[list[str]], int]:
    """Runs one of the steps' subcommands from its argv (their own parsers, no import of the CLI root)."""
    parser = argparse.ArgumentParser(prog="llmrec")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (prepare, train, evaluate, recommend):
        command.register(sub)

    def run_argv(argv: list[str]) -> int:
        args = parser.parse_args(argv)
        return args.run(args)

    return run_argv


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec quickstart``."""
    from llmrec.evaluation.report import read_predictions

    out: Path = args.out
    device = ["--device", args.device] if args.device else []
    source = [f"--{name}={value}" for name in ("data", "columns", "items", "format")
              if (value := getattr(args, name)) is not None]  # fmt: skip
    steps = [
        ("prepare", ["prepare", *source, "--out", str(out / "data"), "--overwrite", "--no-progress"]),
        ("train (quick recipe)", ["train", "--data", str(out / "data"), "--out", str(out / "adapter"),
                                  "--recipe", "quick", "--overwrite", "--no-progress",
                                  *(["--base", args.base] if args.base else [])]),
        ("evaluate", ["evaluate", "--model", str(out / "adapter"), "--data", str(out / "data"), "--users",
                      str(args.users), "--k", "1,5,10", "--baselines", "popularity,itemknn", "--explain-users", "3", "--out",
                      str(out / "report"), "--overwrite", "--no-progress", *device]),
    ]  # fmt: skip
    run_argv = _runner()
    started = time.perf_counter()
    for label, argv in steps:
        print(f"\n== {label}: llmrec {' '.join(argv)}", flush=True)
        began = time.perf_counter()
        if (code := run_argv(argv)) != 0:
            return code
        print(f"-- {label}: {time.perf_counter() - began:.0f} s", flush=True)
    first = read_predictions(out / "report")[0]["user"]
    argv = ["recommend", "--model", str(out / "adapter"), "--data", str(out / "data"), "--user", first, "-k", "5",
            "--explain", *device]  # fmt: skip
    print(f"\n== recommend: llmrec {' '.join(argv)}", flush=True)
    code = run_argv(argv)
    print(f"\nquickstart: {time.perf_counter() - started:.0f} s in all; report in {out / 'report' / 'report.md'}")
    return code
