"""The ``llmrec`` command: one entry point, a small function per subcommand.

Heavy libraries are imported inside the subcommands so that ``llmrec --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from llmrec import __version__
from llmrec.cli_eval import (
    _add_evaluate,
    _add_inference_options,
    _add_quickstart,
    _quiet_loading,
)
from llmrec.errors import LlmrecError
from llmrec.prompts import TASKS


def _mapping(text: str) -> dict[str, str]:
    """Parse ``role=column,role=column``."""
    pairs = [p for p in text.split(",") if p.strip()]
    out = {}
    for pair in pairs:
        role, sep, column = pair.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise argparse.ArgumentTypeError(f"expected ROLE=COLUMN, got {pair!r}")
        out[role.strip()] = column.strip()
    return out


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from llmrec.data import EMBEDDED, FORMATS

    p = sub.add_parser(
        "prepare",
        help="clean, split and render a data set into training/evaluation files",
        description="Load interaction logs, clean them, split them leave-one-out per user and write "
        "catalog.parquet, interactions.parquet, SFT datasets (sft/TASK) and manifest.json.",
    )
    p.add_argument("--data", default=EMBEDDED, help=f"data set name or path (default: the embedded {EMBEDDED})")
    p.add_argument("--out", required=True, type=Path, help="output folder (written whole or not at all)")
    p.add_argument("--format", choices=FORMATS, help="force a loader instead of detecting one")
    p.add_argument("--columns", type=_mapping, help="CSV/JSONL/Parquet: ROLE=COLUMN,... e.g. user=uid,item=sku")
    p.add_argument("--items", help="CSV/JSONL/Parquet: a separate items table (item, title, genres, ...)")
    p.add_argument("--model", help="model whose tokenizer renders prompts (default: embedded SmolLM2-135M)")
    p.add_argument("--prompts", type=Path, help="folder of TASK.yaml templates overriding the shipped ones")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="tasks to build (default: all)")
    p.add_argument("--max-history", type=int, default=20, help="newest history items per prompt (default: 20)")
    p.add_argument("--max-length", type=int, default=512, help="token budget of prompt + answer (default: 512)")
    p.add_argument("--train-targets-per-user", type=int, default=10, help="train targets per user, 0 = all")
    p.add_argument("--negatives-per-positive", type=int, default=1, help="yes_no sampled negatives per liked")
    p.add_argument("--rank-candidates", type=int, default=10, help="rank: candidates per prompt (2-20)")
    p.add_argument("--like-threshold", type=float, default=4.0, help="rating >= this is liked (default: 4.0)")
    p.add_argument("--min-user-interactions", type=int, default=0, help="user k-core (default: off)")
    p.add_argument("--min-item-interactions", type=int, default=0, help="item k-core (default: off)")
    p.add_argument("--item-noun", help="what an item is called in prompts (default from the data)")
    p.add_argument("--seed", type=int, default=0, help="seed of negative sampling (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--examples", type=int, default=0, metavar="N", help="print N rendered samples per task")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    """Run ``llmrec prepare``."""
    from llmrec.data.clean import CleanOptions
    from llmrec.prepare import PrepareOptions, prepare
    from llmrec.samples import SampleOptions

    options = PrepareOptions(
        out=args.out,
        data=args.data,
        format=args.format,
        columns=args.columns,
        items=args.items,
        model=args.model,
        prompts=args.prompts,
        item_noun=args.item_noun,
        clean=CleanOptions(args.like_threshold, args.min_user_interactions, args.min_item_interactions),
        samples=SampleOptions(
            tasks=tuple(args.tasks),
            max_history=args.max_history,
            max_length=args.max_length,
            train_targets_per_user=args.train_targets_per_user,
            negatives_per_positive=args.negatives_per_positive,
            rank_candidates=args.rank_candidates,
            seed=args.seed,
        ),
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    manifest = prepare(options)
    print(
        f"{args.out}: {manifest['users']:,} users, {manifest['items']:,} items, "
        f"{manifest['interactions']:,} interactions "
        f"(train {manifest['splits']['train']:,} / valid {manifest['splits']['valid']:,} / "
        f"test {manifest['splits']['test']:,}; time order: {manifest['time_order']}) in {manifest['seconds']} s"
    )
    for task, counts in manifest["samples"]["counts"].items():
        print(f"  sft/{task}: " + ", ".join(f"{split} {n:,}" for split, n in counts.items()))
    if args.examples > 0:
        show_examples(args.out, list(manifest["samples"]["counts"]), args.examples)
    return 0


def show_examples(folder: Path, tasks: list[str], n: int, split: str = "test") -> None:
    """Print the first ``n`` rendered prompts and completions of each task's ``split``."""
    from datasets import load_from_disk

    for task in tasks:
        rows = load_from_disk(str(Path(folder) / "sft" / task))[split]
        if len(rows) == 0:
            print(f"\n=== {task} ({split}): no samples")
        for row in rows.select(range(min(n, len(rows)))):
            print(f"\n=== {task} ({split}) " + "=" * max(0, 60 - len(task)))
            print(row["prompt"] + row["completion"])


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="LoRA-finetune a base model on a prepared data folder",
        description="Finetune a LoRA adapter with TRL's SFTTrainer (loss on the answer only) on the tasks of a "
        "prepared data folder. Settings come from the recipe (defaults < --recipe < flags). Scale out with "
        "`accelerate launch --num_processes N -m llmrec train ...`.",
    )
    p.add_argument("--data", required=True, type=Path, help="a folder written by `llmrec prepare`")
    p.add_argument("--out", required=True, type=Path, help="adapter folder (written whole or not at all)")
    p.add_argument("--recipe", help="finetune/NAME.yaml or a shipped recipe name: quick, full, qlora (default: quick)")
    p.add_argument("--base", help="base model: HF id or local folder (default: the recipe's, else embedded SmolLM2)")
    p.add_argument("--tasks", nargs="+", choices=TASKS, help="train only these tasks (weights from the recipe, else 1)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides the recipe's epochs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe key, e.g. --set lora_r=16 --set learning_rate=1e-4")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT.checkpoints")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out and old checkpoints")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep OUT.checkpoints after success")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_train)


def recipe_from_args(args: argparse.Namespace):
    """The recipe after applying --recipe, --set, --base, --tasks and --max-steps, in that order."""
    from llmrec.recipe import load_recipe, parse_override

    recipe = load_recipe(args.recipe or "quick")
    changes = dict(parse_override(text) for text in args.overrides)
    if args.base is not None:
        changes["base"] = args.base
    if args.tasks:
        weights = changes.get("tasks", recipe.tasks)
        changes["tasks"] = {t: weights.get(t, 1.0) for t in args.tasks}
    if args.max_steps is not None:
        changes["max_steps"] = args.max_steps
    return recipe.replace(**changes) if changes else recipe


def run_train(args: argparse.Namespace) -> int:
    """Run ``llmrec train``."""
    from llmrec.train import TrainOptions, train

    options = TrainOptions(
        data=args.data,
        out=args.out,
        recipe=recipe_from_args(args),
        resume=args.resume,
        overwrite=args.overwrite,
        keep_checkpoints=args.keep_checkpoints,
        progress=not args.no_progress,
    )
    manifest = train(options)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    run = manifest["training"]
    print(
        f"{args.out}: {run['steps']} steps, {run['samples']:,} samples, {run['tokens']:,} tokens in "
        f"{run['seconds']} s ({run['samples_per_second']:.2f} samples/s, {run['tokens_per_second']:.0f} tokens/s, "
        f"peak {run['peak_memory_mib']:,} MiB, {run['device']}, {run['precision']}, {run['processes']} process(es))"
    )
    for task, m in manifest["metrics"]["valid"].items():
        print(f"  valid {task}: loss {m['loss']:.4f}, token accuracy {m['mean_token_accuracy']:.3f} ({m['samples']} samples)")
    return 0


def _add_recommend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend",
        help="top-k catalogue items for a user or a history, optionally explained",
        description="Recommend the next items by beam search constrained to the catalogue (every item exists). "
        "The history's own items are never recommended.",
    )
    _add_inference_options(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id of the data: their whole history is used")
    who.add_argument("--history", nargs="+", metavar="ITEM", help="item ids or titles, oldest first")
    p.add_argument("-k", type=int, default=10, help="how many items (default: 10)")
    p.add_argument("--explain", action="store_true", help="add a generated, grounding-checked explanation")
    p.add_argument("--json", action="store_true", help='print {"items": [{"item_id", "title", "score", ...}]}')
    p.set_defaults(run=run_recommend)


def run_recommend(args: argparse.Namespace) -> int:
    """Run ``llmrec recommend``."""
    import json
    import warnings

    from llmrec.recommender import Recommender

    if args.k < 1:
        raise LlmrecError(f"-k must be >= 1, got {args.k}")
    _quiet_loading()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = Recommender.load(args.model, args.data, args.backend, args.device)
    for w in caught:
        if w.category is UserWarning and "catalogue differs" in str(w.message):
            print(f"llmrec: note: {w.message}", file=sys.stderr)
    history = rec.user_history(args.user) if args.user is not None else args.history
    items = rec.recommend(history, args.k, explain=args.explain)
    if args.json:
        print(json.dumps({"items": [i.to_dict() for i in items]}, ensure_ascii=False))
        return 0
    who = f"user {args.user}" if args.user is not None else "this history"
    shown = rec.resolve(history)[-rec.max_history :]
    print(f"Top {len(items)} for {who} ({len(history)} items; the newest {len(shown)} in the prompt, newest last):")
    for pos in shown[-5:]:
        print(f"  - {rec.titles[pos]}")
    for n, item in enumerate(items, 1):
        print(f"{n:>3}. {item.title}  [{item.item_id}]  log-prob {item.score:.2f}")
        if item.explanation is not None:
            mark = "grounded" if item.grounded else "NOT grounded: names an item outside the history"
            print(f"     why ({mark}): {item.explanation}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from llmrec.predict import PREDICT_TASKS

    p = sub.add_parser(
        "predict",
        help="batch answers for a JSONL file of requests (resumable)",
        description="Answer every request of --input (one JSON object a line: id, history, and target or "
        "candidates) into --output. Re-running skips ids already answered; a bad line is reported and skipped.",
    )
    _add_inference_options(p)
    p.add_argument("--input", required=True, type=Path, help="requests, JSONL")
    p.add_argument("--output", required=True, type=Path, help="answers, JSONL (appended; existing ids skipped)")
    p.add_argument("--task", required=True, choices=PREDICT_TASKS)
    p.add_argument("-k", type=int, default=10, help="next_item: items per request unless it says k (default: 10)")
    p.add_argument("--batch-size", type=int, default=8, help="requests per model batch (default: 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Run ``llmrec predict``."""
    from llmrec.predict import run_predict as predict
    from llmrec.recommender import Recommender

    if args.k < 1 or args.batch_size < 1:
        raise LlmrecError("-k and --batch-size must be >= 1")
    if not args.input.is_file():
        raise LlmrecError(f"{args.input}: no such file")
    _quiet_loading()
    rec = Recommender.load(args.model, args.data, args.backend, args.device)
    counts = predict(rec, args.task, args.input, args.output, args.k, args.batch_size, not args.no_progress)
    print(
        f"{args.output}: {counts['answered']} answered, {counts['skipped_done']} already there, "
        f"{counts['bad']} bad request(s) skipped"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands register themselves)."""
    parser = argparse.ArgumentParser(
        prog="llmrec", description="Recommendations from a generative LLM, decoded only over your catalogue."
    )
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_prepare(sub)
    _add_train(sub)
    _add_recommend(sub)
    _add_predict(sub)
    _add_evaluate(sub)
    _add_quickstart(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code. User-fixable errors are one line on stderr, exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except LlmrecError as exc:
        print(f"llmrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
