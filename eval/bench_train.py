"""Benchmark: training throughput before and after the CPU trainer changes, fp32 against bf16.

Run from the repository root after `make install`, on a folder written by `llmrec prepare`:

    .venv/bin/llmrec prepare --out runs/ml-latest-small
    .venv/bin/python eval/bench_train.py --data runs/ml-latest-small --out runs/bench-train

Every variant trains the same recipe (the quick one unless `--recipe`; `before` and
`after-dropout` with LoRA dropout 0.05 whatever it says), the same data and seed, for `--steps`
optimizer steps, each in its own process (so its peak RSS is its own). Rows for `after`,
`after-2proc` and `bare` in eval/RESULTS.md before 2026-11-27 ran at dropout 0.05, the quick
recipe's then; they are not comparable with a run of today's quick recipe (dropout 0).

- `before`: TRL's SFTTrainer as llmrec used it until this change: TRL tokenizes the rows, the
  LM head runs over every position, batches are drawn in random order; LoRA dropout 0.05, the
  recipe's until 2026-11-27.
- `after-dropout`: llmrec's trainer (below) with that dropout: the trainer changes alone.
- `after`: llmrec's trainer: rows tokenized once in batches (and cached), the LM head only at
  the answer tokens, batches grouped by length; the recipe's dropout (the quick recipe's is 0).
- `after-2proc`: the `after` trainer in two processes of one thread each (`accelerate launch
  --num_processes 2`, DDP over gloo), half the batch each, so a step sees the same samples; on
  2 cores two one-thread processes do more work than one two-thread process. Peak RSS is one
  process's.
- `bare`: no Trainer at all: the same PEFT model, AdamW and loss on the `after` batches, to show
  what the Trainer still costs.

each in fp32 and in bf16 (mixed precision: autocast over fp32 weights; on a CPU without AVX-512
BF16 or AMX, bf16 is emulated and slower, which the table then shows). Tokens/s counts the
non-padding tokens of the training steps (TRL's `num_tokens`) over the training seconds. With
`--curves N` the `after` variant also trains N steps in fp32 and in bf16 and draws their loss
curves side by side (PNG) with their final valid losses. Prints Markdown for eval/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("before", "after-dropout", "after", "after-2proc", "bare")
OLD_DROPOUT = 0.05  # the LoRA dropout of every recipe until 2026-11-27


def child(args: argparse.Namespace) -> None:
    """One variant in this process; prints one JSON line."""
    from accelerate import PartialState

    from llmrec.training import tokens, trainer
    from llmrec.training.recipe import load_recipe
    from llmrec.training.train import TrainOptions, train

    recipe = load_recipe(args.recipe).replace(
        max_steps=args.steps, precision=args.precision, max_eval_samples=args.eval_samples, save_steps=10_000,
        logging_steps=1, group_by_length=args.variant != "before")  # fmt: skip
    if args.variant == "after-2proc":
        recipe = recipe.replace(batch_size=recipe.batch_size // 2)
    if args.variant in ("before", "after-dropout"):
        recipe = recipe.replace(lora_dropout=OLD_DROPOUT)
    if args.variant == "before":
        from trl import SFTTrainer

        trainer.trainer_class = lambda: SFTTrainer
        tokens.tokenized = lambda rows, *a, **k: rows
    if args.variant == "bare":
        print(json.dumps(bare(args, recipe)))
        return
    out = args.out / f"{args.variant}-{args.precision}-{args.steps}"
    manifest = train(TrainOptions(args.data, out, recipe, overwrite=True, progress=False))
    if not PartialState().is_main_process:
        return
    t = manifest["training"]
    losses = [e["loss"] for e in t["log"]]
    print(json.dumps({"steps": t["steps"], "samples": t["samples"], "tokens": t["tokens"], "seconds": t["seconds"],
                      "precision": t["precision"], "valid": manifest["metrics"]["valid"], "losses": losses}))  # fmt: skip


def bare(args: argparse.Namespace, recipe) -> dict:
    """The same steps with no Trainer: PEFT model, AdamW, the compact loss, batches in length groups."""
    import torch
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq

    from llmrec.data import prepared
    from llmrec.environment import cpu_bf16
    from llmrec.files import sha256_file
    from llmrec.training.lora import load_base, lora_config, resolve_precision
    from llmrec.training.mixture import mix, task_splits
    from llmrec.training.tokens import cache_key, tokenized
    from llmrec.training.trainer import compact_loss

    torch.manual_seed(recipe.seed)
    precision = resolve_precision(recipe, False, cpu_bf16())
    model, tokenizer = load_base(recipe.base, recipe, precision, cuda=False)
    model = get_peft_model(model, lora_config(recipe))
    splits, _ = task_splits(args.data, recipe.tasks, False, False)
    per_step = recipe.batch_size * recipe.grad_accum
    rows = mix(splits, recipe.tasks, recipe.seed, args.steps * per_step)
    key = cache_key(tokenizer, sha256_file(prepared.manifest_path(args.data)), recipe.tasks, recipe.seed, len(rows))
    rows = tokenized(rows, tokenizer, args.data, key)
    examples = [{"input_ids": ids[: recipe.max_length],
                 "labels": [t if m else -100 for t, m in zip(ids, mask)][: recipe.max_length]}
                for ids, mask in zip(rows["input_ids"], rows["completion_mask"])]  # fmt: skip
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.learning_rate)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else None
    model.train()
    n_tokens, began = 0, time.perf_counter()
    for step in range(args.steps):
        batch = collate([examples[i] for i in order[step * per_step : (step + 1) * per_step]])
        with autocast() if autocast else contextlib.nullcontext():
            loss, _ = compact_loss(model, dict(batch))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        n_tokens += int(batch["attention_mask"].sum())
    seconds = time.perf_counter() - began
    return {"steps": args.steps, "samples": args.steps * per_step, "tokens": n_tokens, "seconds": round(seconds, 1),
            "precision": precision, "valid": {}, "losses": []}  # fmt: skip


def run_child(args: argparse.Namespace, variant: str, precision: str, steps: int) -> tuple[dict, float]:
    cmd = [sys.executable, __file__, "--child", "--variant", variant, "--precision", precision, "--steps", str(steps),
           "--data", str(args.data), "--out", str(args.out), "--recipe", args.recipe,
           "--eval-samples", str(args.eval_samples)]  # fmt: skip
    env = None
    if variant == "after-2proc":
        accelerate = Path(sys.executable).with_name("accelerate")
        cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", *cmd[1:]]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def curves(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    print("\n| precision | steps | final valid loss (mean over tasks) | per task |\n|---|---:|---:|---|")
    finals, results = {}, {}
    for precision in ("fp32", "bf16"):
        results[precision] = result = run_child(args, "after", precision, args.curves)[0]
        ax.plot(range(1, len(result["losses"]) + 1), result["losses"], label=f"{precision} (train loss)")
        valid = {t: round(m["loss"], 4) for t, m in result["valid"].items()}
        finals[precision] = sum(valid.values()) / len(valid)
        print(f"| {precision} | {result['steps']} | {finals[precision]:.4f} | {valid} |", flush=True)
    print(f"\nbf16 valid loss / fp32 valid loss = {finals['bf16'] / finals['fp32']:.4f}")
    (args.out / "curves.json").write_text(json.dumps(results, indent=1))  # per-step losses, valid losses, seconds
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(f"llmrec train, recipe {args.recipe}: fp32 vs bf16 (same data and seed)")
    ax.legend()
    fig.tight_layout()
    path = args.out / "loss_fp32_vs_bf16.png"
    fig.savefig(path, dpi=120)
    print(f"\nloss curves: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a prepared data folder")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    parser.add_argument("--recipe", default="quick")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps of each timed run")
    parser.add_argument("--eval-samples", type=int, default=16, help="valid samples per task")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS,
                        help="timed variants (none with --curves: the curves alone)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--curves", type=int, default=0, help="steps of the fp32/bf16 loss-curve runs (0 = none)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.variants:
        print("| variant | precision | steps | samples | tokens | train s | samples/s | tokens/s | peak RSS MiB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for variant in args.variants:
        for precision in args.precisions:
            r, rss = run_child(args, variant, precision, args.steps)
            print(f"| {variant} | {r['precision']} | {r['steps']} | {r['samples']} | {r['tokens']:,} | {r['seconds']:.1f} | "
                  f"{r['samples'] / r['seconds']:.2f} | {r['tokens'] / r['seconds']:.0f} | {rss:,.0f} |", flush=True)  # fmt: skip
    if args.curves:
        curves(args)


if __name__ == "__main__":
    main()
