"""One LoRA step of SmolLM2-135M on 4 prepared rows, fp32 against bf16 autocast, on this CPU.

    .venv/bin/python eval/bench_bf16_step.py      # after `llmrec prepare --out runs/ml-latest-small`

One warm-up step, then one timed step each, in one process. Whether bf16 pays depends on the
CPU: with AVX-512 BF16 or AMX it is native; without, torch emulates it.
"""

from __future__ import annotations

import argparse
import contextlib
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/ml-latest-small", help="a prepared folder")
    args = parser.parse_args()

    import torch
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq

    from llmrec.data import prepared
    from llmrec.training.lora import load_base, lora_config
    from llmrec.training.recipe import load_recipe
    from llmrec.training.tokens import tokenize_rows
    from llmrec.training.trainer import compact_loss

    recipe = load_recipe("quick")
    model, tokenizer = load_base(None, recipe, "fp32", cuda=False)
    model = get_peft_model(model, lora_config(recipe))
    rows = prepared.load_sft(args.data, "next_item", "train").select(range(4))
    tokens = tokenize_rows(list(rows["prompt"]), list(rows["completion"]), tokenizer)
    examples = [{"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}
                for ids, mask in zip(tokens["input_ids"], tokens["completion_mask"])]  # fmt: skip
    batch = dict(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)(examples))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    n_tokens = int(batch["attention_mask"].sum())

    def step(autocast) -> tuple[float, float]:
        began = time.perf_counter()
        with autocast() if autocast else contextlib.nullcontext():
            loss, _ = compact_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - began, float(loss)

    step(None)  # warm-up
    for name, autocast in [("fp32", None), ("bf16 autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))]:
        seconds, loss = step(autocast)
        print(f"{name}: {seconds:.1f} s a step, {n_tokens / seconds:.0f} tokens/s (batch of 4, {n_tokens} tokens), "
              f"loss {loss:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
