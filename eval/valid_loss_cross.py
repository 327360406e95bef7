"""Valid loss of trained adapters, each evaluated in fp32 and under bf16 autocast.

`bench_train.py --curves` evaluates each run in its own precision, so a bf16 run's valid loss
mixes two things: what bf16 training learned, and bf16's rounding while scoring. This script
separates them: every adapter is scored on the same valid rows (the seeded subset `llmrec train`
takes with `max_eval_samples`) in both precisions. The loss of a task is the mean over its answer
tokens (token-weighted; the Trainer's figure averages per-batch means, so it differs a little).

    .venv/bin/python eval/valid_loss_cross.py --data runs/ml-h10 --samples 64 \
        runs/bench-curves100/after-fp32-100 runs/bench-curves100/after-bf16-100
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path


def score(model, tokenizer, rows, precision: str, batch_size: int) -> float:
    import torch
    from transformers import DataCollatorForSeq2Seq

    from llmrec.training.tokens import tokenize_rows
    from llmrec.training.trainer import compact_loss

    tok = tokenize_rows(list(rows["prompt"]), list(rows["completion"]), tokenizer)
    examples = [{"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}
                for ids, mask in zip(tok["input_ids"], tok["completion_mask"])]  # fmt: skip
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    total, count = 0.0, 0
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = dict(collate(examples[start : start + batch_size]))
            with cast():
                loss, (n, _, _) = compact_loss(model, batch)
            total += float(loss) * int(n)
            count += int(n)
    return total / max(count, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapters", nargs="+", type=Path, help="adapter folders written by llmrec train")
    parser.add_argument("--data", type=Path, required=True, help="the prepared folder they were trained on")
    parser.add_argument("--samples", type=int, default=64, help="valid rows per task (as max_eval_samples)")
    parser.add_argument("--seed", type=int, default=0, help="the recipe seed that drew the valid subset")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    import torch
    from peft import PeftModel

    from llmrec.training.lora import load_base
    from llmrec.training.mixture import task_splits, valid_sets
    from llmrec.training.recipe import load_recipe

    recipe = load_recipe("quick")
    splits, _ = task_splits(args.data, recipe.tasks, False, False)
    valid = valid_sets(splits, args.samples, args.seed)
    results = {}
    for folder in args.adapters:
        base, tokenizer = load_base(recipe.base, recipe, "fp32", cuda=False)
        model = PeftModel.from_pretrained(base, str(folder)).eval()
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            losses = {task: round(score(model, tokenizer, rows, precision, args.batch_size), 4) for task, rows in valid.items()}
            mean = sum(losses.values()) / len(losses)
            results[f"{folder.name} / eval {precision}"] = {"mean": round(mean, 4), **losses}
            print(f"| {folder.name} | {precision} | {mean:.4f} | "
                  + " | ".join(f"{losses[t]:.4f}" for t in valid) + " |", flush=True)  # fmt: skip
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
