"""Where a LoRA training step's CPU time goes, by operator, and what LoRA dropout costs.

    .venv/bin/python eval/profile_step.py --data runs/ml-h10        # after `llmrec prepare --out runs/ml-h10`

One process, the quick recipe's model (SmolLM2-135M, LoRA r 8 on every linear layer), AdamW and
llmrec's loss (the LM head at the answer tokens only), on batches of 4 next_item train rows:

1. the operators of `--profile-steps` steps under the given dropout, by self CPU time (the
   profiler's own overhead included; its table is for shares, not speed), and the matrix
   products split into the frozen layers' and LoRA's rank-r ones (by the operands' shapes);
2. tokens/s with `--dropout` and without LoRA dropout, alternating over `--rounds` rounds of
   the same batches on the same model (the dropout modules are swapped in place, the learning
   rate is 0 so every round sees the same weights; which goes first alternates too), so that
   the machine's drift hits both alike;
3. one dropout mask's random draw and one matrix product of the same input, on one thread and
   on all, to show which of them the threads share.

Prints Markdown for eval/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/ml-h10", help="a prepared folder")
    parser.add_argument("--dropout", type=float, default=0.05, help="the dropout of the profiled steps and the A/B")
    parser.add_argument("--batches", type=int, default=6, help="batches of 4 rows in a round")
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=12, help="operators listed")
    args = parser.parse_args()

    import torch
    from peft import get_peft_model
    from torch.profiler import ProfilerActivity, profile
    from transformers import DataCollatorForSeq2Seq

    from llmrec.data import prepared
    from llmrec.training.lora import load_base, lora_config
    from llmrec.training.recipe import load_recipe
    from llmrec.training.tokens import tokenize_rows
    from llmrec.training.trainer import compact_loss

    torch.manual_seed(0)
    recipe = load_recipe("quick").replace(lora_dropout=args.dropout)
    model, tokenizer = load_base(None, recipe, "fp32", cuda=False)
    model = get_peft_model(model, lora_config(recipe))
    model.train()
    rows = prepared.load_sft(args.data, "next_item", "train").select(range(4 * args.batches))
    tokens = tokenize_rows(list(rows["prompt"]), list(rows["completion"]), tokenizer)
    examples = [{"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}
                for ids, mask in zip(tokens["input_ids"], tokens["completion_mask"])]  # fmt: skip
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    batches = [dict(collate(examples[i : i + 4])) for i in range(0, len(examples), 4)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    lora_layers = [m for m in model.modules() if hasattr(m, "lora_dropout") and "default" in m.lora_dropout]

    def set_dropout(p: float) -> None:  # what PEFT builds for that dropout: Dropout(p), or Identity for 0
        for layer in lora_layers:
            layer.lora_dropout["default"] = torch.nn.Dropout(p) if p else torch.nn.Identity()

    def step(batch) -> int:
        loss, _ = compact_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return int(batch["attention_mask"].sum())

    step(batches[0])  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(args.profile_steps):
            step(batches[i % len(batches)])
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{len(lora_layers)} LoRA layers; dropout {args.dropout}; {args.profile_steps} profiled steps\n")
    print("| operator | self CPU s a step | share | calls a step |\n|---|---:|---:|---:|")
    for e in events[: args.top]:
        print(f"| `{e.key}` | {e.self_cpu_time_total / 1e6 / args.profile_steps:.2f} | "
              f"{e.self_cpu_time_total / total:.1%} | {e.count // args.profile_steps} |")  # fmt: skip

    rank = recipe.lora_r
    by_shape = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::mm"]
    vocab = model.config.vocab_size  # the head's product: its row count may happen to equal the rank

    def is_lora(shapes) -> bool:
        return any(rank in dims for dims in shapes if dims) and not any(vocab in dims for dims in shapes if dims)

    lora = sum(e.self_cpu_time_total for e in by_shape if is_lora(e.input_shapes))
    base = sum(e.self_cpu_time_total for e in by_shape) - lora
    print("\n| matrix products | self CPU s a step | share |\n|---|---:|---:|")
    for name, value in (("frozen layers (and the head)", base), (f"LoRA's rank-{rank} factors", lora)):
        print(f"| {name} | {value / 1e6 / args.profile_steps:.2f} | {value / total:.1%} |")

    if args.rounds and args.dropout:
        rates: dict[float, list[float]] = {args.dropout: [], 0.0: []}
        for r in range(args.rounds):
            for p in list(rates)[:: 1 if r % 2 == 0 else -1]:
                set_dropout(p)
                began, n = time.perf_counter(), sum(step(b) for b in batches)
                rates[p].append(n / (time.perf_counter() - began))
        print(f"\n| LoRA dropout | tokens/s by round ({len(batches)} steps each, alternating) | mean |\n|---:|---|---:|")
        for p, values in rates.items():
            print(f"| {p} | {', '.join(f'{v:.0f}' for v in values)} | {sum(values) / len(values):.0f} |")

    x = torch.randn(4, 300, model.config.hidden_size)  # a batch of 4 rows of 300 tokens
    weight = torch.randn(model.config.hidden_size, model.config.hidden_size)
    threads = torch.get_num_threads()
    print(f"\n| threads | dropout mask of a {tuple(x.shape)} input, ms | product with a square weight, ms |\n|---:|---:|---:|")
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        mask = torch.empty_like(x)
        timings = []
        for work in (lambda: mask.bernoulli_(1 - 0.05), lambda: x.view(-1, x.shape[-1]) @ weight):
            work()
            began = time.perf_counter()
            for _ in range(50):
                work()
            timings.append((time.perf_counter() - began) / 50 * 1e3)
        print(f"| {n} | {timings[0]:.2f} | {timings[1]:.2f} |")
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
