"""The evaluation subcommands (``evaluate``, ``evaluate-merge``, ``quickstart``) and the options
they share with ``recommend`` and ``predict``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _quiet_loading() -> None:
    """No per-tensor loading bars: recommend/predict print results (and one-line errors) only."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="an llmrec adapter folder, or a base model (default: the shipped adapter)")
    p.add_argument("--data", help="a prepared folder or raw data as prepare takes it (default: embedded ml-latest-small)")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="inference engine (default: hf)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def _ks(text: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="offline metrics of llmrec and classical baselines on the same split and users",
        description="Leave-one-out evaluation: llmrec's top-K over the whole catalogue, yes/no and candidate "
        "ranking, against popularity, item-kNN and SASRec fitted on the same train events. Writes report.json, "
        "report.md, plots and per-user predictions.",
    )
    _add_inference_options(p)
    p.add_argument("--out", required=True, type=Path, help="report folder (written whole or not at all)")
    p.add_argument("--split", default="test", choices=("valid", "test"))
    p.add_argument("--users", type=int, default=0, help="evaluate N users drawn with --seed (default: all)")
    p.add_argument("--k", type=_ks, default=[1, 5, 10, 20], help="cut-offs, e.g. 1,5,10,20")
    p.add_argument("--tasks", type=_names, default=["next_item", "yes_no", "rank"], help="next_item,yes_no,rank")
    p.add_argument("--baselines", type=_names, default=["popularity", "itemknn", "sasrec"],
                   help="comma-separated: popularity,itemknn,sasrec (empty: none)")
    p.add_argument("--shard", default="0/1", help="evaluate part i of n of the users (merge with evaluate-merge)")
    p.add_argument("--explain-users", type=int, default=10, help="users whose top item is explained (groundedness)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, help="prompts per forward pass (default: 8 on a GPU, 1 on CPU)")
    p.add_argument("--no-llmrec", action="store_true", help="baselines only (e.g. to merge with llmrec-only shards)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run_evaluate)
    m = sub.add_parser("evaluate-merge", help="merge evaluate shards into one report",
                       description="Concatenate the per-user predictions of evaluate shards and recompute every metric.")
    m.add_argument("shards", nargs="+", type=Path, help="folders written by evaluate --shard i/n")
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--common-users", action="store_true",
                   help="keep only the users every system was scored on (e.g. baselines over all users, llmrec over a sample)")
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(run=run_merge)


def _print_report(out: Path, report: dict) -> None:
    print(f"{out}: {report['config']['users_evaluated']:,} users, {report['config']['split']} split")
    for name, m in report["systems"].items():
        keys = [k for k in ("hr@10", "ndcg@10", "mrr@10", "valid_rate", "auc", "rank_hr@1") if k in m]
        print(f"  {name:<11} " + "  ".join(f"{k} {m[k]:.4f}" for k in keys))


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``llmrec evaluate``."""
    from llmrec.evaluate import EvaluateOptions, evaluate, parse_shard

    options = EvaluateOptions(
        out=args.out, model=args.model, data=args.data, split=args.split, users=args.users, k=args.k,
        tasks=args.tasks, baselines=args.baselines, shard=parse_shard(args.shard), explain_users=args.explain_users,
        seed=args.seed, batch_size=args.batch_size, llmrec=not args.no_llmrec, backend=args.backend, device=args.device,
        overwrite=args.overwrite, progress=not args.no_progress,
    )  # fmt: skip
    _quiet_loading()
    _print_report(args.out, evaluate(options))
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """Run ``llmrec evaluate-merge``."""
    from llmrec.evaluate import merge

    _print_report(args.out, merge(args.shards, args.out, args.overwrite, args.common_users))
    return 0


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="the whole path on the embedded data in minutes: prepare, train, evaluate, recommend",
        description="Prepare the embedded ml-latest-small, train the quick recipe on the embedded SmolLM2, "
        "evaluate it against popularity and item-kNN on a sample of users, and recommend with explanations "
        "for one user. About 10 minutes on a 2-core CPU.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="folder for every output")
    p.add_argument("--users", type=int, default=10, help="users evaluated (default: 10; ~10 s each on 2 CPU cores)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.set_defaults(run=run_quickstart)


def run_quickstart(args: argparse.Namespace) -> int:
    """Run ``llmrec quickstart``."""
    from llmrec.cli import main

    out: Path = args.out
    device = ["--device", args.device] if args.device else []
    steps = [
        ("prepare", ["prepare", "--out", str(out / "data"), "--overwrite", "--no-progress"]),
        ("train (quick recipe)", ["train", "--data", str(out / "data"), "--out", str(out / "adapter"),
                                  "--recipe", "quick", "--overwrite", "--no-progress"]),
        ("evaluate", ["evaluate", "--model", str(out / "adapter"), "--data", str(out / "data"), "--users",
                      str(args.users), "--k", "1,5,10", "--baselines", "popularity,itemknn", "--explain-users", "3", "--out",
                      str(out / "report"), "--overwrite", "--no-progress", *device]),
    ]  # fmt: skip
    started = time.perf_counter()
    for label, argv in steps:
        print(f"\n== {label}: llmrec {' '.join(argv)}", flush=True)
        began = time.perf_counter()
        if (code := main(argv)) != 0:
            return code
        print(f"-- {label}: {time.perf_counter() - began:.0f} s", flush=True)
    import json

    first = json.loads((out / "report" / "predictions.jsonl").read_text().splitlines()[0])["user"]
    argv = ["recommend", "--model", str(out / "adapter"), "--data", str(out / "data"), "--user", first, "-k", "5",
            "--explain", *device]  # fmt: skip
    print(f"\n== recommend: llmrec {' '.join(argv)}", flush=True)
    code = main(argv)
    print(f"\nquickstart: {time.perf_counter() - started:.0f} s in all; report in {out / 'report' / 'report.md'}")
    return code
