"""``llmrec train``: LoRA-finetune a base model on a prepared folder."""

from __future__ import annotations

import argparse
import dataclasses

from llmrec.cli.common import quiet_loading
from llmrec.errors import LlmrecError
from llmrec.options import add_arguments, from_args
from llmrec.prompting.templates import TASKS
from llmrec.training.recipe import Recipe
from llmrec.training.train import TrainOptions


def _recipe_help(name: str) -> str:
    """A recipe field's help text (the flag overrides that field)."""
    return next(f.metadata["help"] for f in dataclasses.fields(Recipe) if f.name == name)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="LoRA-finetune a base model on a prepared data folder",
        description="Finetune a LoRA adapter with TRL's SFTTrainer (loss on the answer only) on the tasks of a "
        "prepared data folder. Settings come from the recipe (defaults < --recipe < flags). Scale out with "
        "`accelerate launch --num_processes N -m llmrec train ...`.",
    )
    add_arguments(p, TrainOptions)
    p.add_argument("--recipe", help="finetune/NAME.yaml or a shipped recipe name: quick, full, shipped, gpu, qlora (default: quick)")
    p.add_argument("--base", help=_recipe_help("base"))
    p.add_argument("--tasks", nargs="+", choices=TASKS, help="train only these tasks (weights from the recipe, else 1)")
    p.add_argument("--max-steps", type=int, help=_recipe_help("max_steps"))
    p.add_argument("--cf", choices=("auto", "sasrec", "itemknn", "popularity", "none"), help=_recipe_help("cf"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe key, e.g. --set lora_r=16 --set learning_rate=1e-4")  # fmt: skip
    p.set_defaults(run=run)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The recipe after applying --recipe, --set, --base, --tasks, --max-steps and --cf, in that order."""
    from llmrec.training.recipe import load_recipe, parse_override

    recipe = load_recipe(args.recipe or "quick")
    changes = dict(parse_override(text) for text in args.overrides)
    if args.base is not None:
        changes["base"] = args.base
    if args.tasks:
        weights = changes.get("tasks", recipe.tasks)
        changes["tasks"] = {t: weights.get(t, 1.0) for t in args.tasks}
    if args.max_steps is not None:
        changes["max_steps"] = args.max_steps
    if args.cf is not None:
        changes["cf"] = args.cf
    return recipe.replace(**changes) if changes else recipe


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec train``."""
    from llmrec.training.train import train

    if args.max_steps is not None and args.max_steps < 1:
        # the recipe's max_steps 0 means "run the epochs"; a flag that overrides them must ask for steps
        raise LlmrecError(f"--max-steps must be >= 1, got {args.max_steps} (leave it out to run the recipe's epochs)")
    options = from_args(TrainOptions, args, recipe=recipe_from_args(args), explicit_tasks=bool(args.tasks))
    if not options.progress:
        quiet_loading()  # no per-tensor loading bar either
    manifest = train(options)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    run = manifest["training"]
    print(
        f"{options.out}: {run['steps']} steps, {run['samples']:,} samples, {run['tokens']:,} tokens in "
        f"{run['seconds']} s ({run['samples_per_second']:.2f} samples/s, {run['tokens_per_second']:.0f} tokens/s, "
        f"peak {run['peak_memory_mib']:,} MiB, {run['device']}, {run['precision']}, {run['processes']} process(es))"
    )
    for task, m in manifest["metrics"]["valid"].items():
        print(f"  valid {task}: loss {m['loss']:.4f}, token accuracy {m['mean_token_accuracy']:.3f} ({m['samples']} samples)")
    return 0
