"""Probe: would bf16 weights speed up recommending on a CPU with AVX-512 BF16, and what would change?

Not a feature: on a CPU the transformers backend loads fp32 whatever the CPU has (bf16 only on
a GPU). This loads the shipped adapter twice, keeps one copy in fp32 and casts the other's
decoder to bf16 (its LM head still computes in fp32, as the backend does on a GPU), then times
both on the same users in alternating rounds and compares their answers. Run from the repository
root after `make install`:

    .venv/bin/python eval/probe_bf16_inference.py --users 8 --rounds 2
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--modes", nargs="+", default=["llm", "rerank"], choices=["llm", "rerank"])
    args = parser.parse_args()

    import torch

    from llmrec import Recommender

    recs = {"fp32": Recommender.load(), "bf16": Recommender.load()}
    recs["bf16"].backend.model.to(torch.bfloat16)  # the head keeps its fp32 forward (the backend set it at load)
    rec = recs["fp32"]
    users = sorted(rec.interactions["user_id"].astype(str).unique(), key=lambda u: (len(u), u))[: args.users]
    histories = [rec.user_history(u) for u in users]
    print(f"{len(users)} users, k {args.k}, {torch.get_num_threads()} threads")
    print("| mode | precision | round | seconds | users/s |\n|---|---|---:|---:|---:|")
    answers: dict[tuple[str, str], list] = {}
    for mode in args.modes:
        for r in range(args.rounds):
            for name in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
                started = time.perf_counter()
                out = recs[name].recommend_many(histories, args.k, mode=mode)
                seconds = time.perf_counter() - started
                answers[mode, name] = [[i.item_id for i in o] for o in out]
                print(f"| {mode} | {name} | {r + 1} | {seconds:.1f} | {len(users) / seconds:.2f} |", flush=True)
        a, b = answers[mode, "fp32"], answers[mode, "bf16"]
        same = sum(x == y for x, y in zip(a, b))
        overlap = sum(len(set(x) & set(y)) for x, y in zip(a, b)) / (len(a) * args.k)
        print(f"{mode}: identical lists {same} of {len(a)}; top-{args.k} overlap {overlap:.2f}")
    targets = [(h[:-1], h[-1], ()) for h in histories]
    probs = {name: r.predict_yes_no_many(targets) for name, r in recs.items()}
    gaps = [abs(x - y) for x, y in zip(probs["fp32"], probs["bf16"])]
    print(f"yes/no: max |p_fp32 - p_bf16| {max(gaps):.4f}, mean {sum(gaps) / len(gaps):.4f}")


if __name__ == "__main__":
    main()
