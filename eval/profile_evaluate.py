"""Where `llmrec evaluate` spends memory and time, stage by stage, on one prepared folder.

    .venv/bin/python eval/profile_evaluate.py --data runs/new-domain/prepared --model runs/new-domain/adapter --users 100

Runs the stages of ``llmrec evaluate`` one after another in this process and prints, after
each, the resident memory now and its peak so far (Linux /proc), and the stage's seconds; then
the per-user next-item latencies (p50, p95, max) with the users' prompt lengths and how many
beam searches were retried wider. ``--whole-matrix`` also scores every valid user at once, as
evaluate did before it scored in blocks, to show what that cost.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def memory() -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def stage(name: str, began: float) -> float:
    now, peak = memory()
    print(f"| {name} | {time.perf_counter() - began:.1f} | {now:,.0f} | {peak:,.0f} |", flush=True)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--whole-matrix", action="store_true")
    args = parser.parse_args()

    from llmrec.collab import make, ndcg10
    from llmrec.decoding.backends import hf
    from llmrec.decoding.recommender import Recommender
    from llmrec.evaluation import evaluate as ev

    print("| stage | seconds | RSS MiB | peak RSS MiB |\n|---|---:|---:|---:|")
    t = stage("start (imports)", time.perf_counter())
    rec = Recommender.load(args.model, args.data, device="cpu", batch_size=1)
    t = stage("Recommender.load (model, catalogue, index)", t)
    item_ids = rec.item_ids
    seqs = ev.sequences(rec.interactions, {item: i for i, item in enumerate(item_ids)})
    users = ev.select_users(rec.interactions, "test", args.users, 0, (0, 1))
    pairs = {u: ev.history_and_target(seqs[u], "test") for u in users}
    t = stage("sequences and users", t)
    samples = {task: ev._samples(Path(args.data), task, "test", set(pairs)) for task in ("yes_no", "rank")}
    t = stage(f"yes_no and rank samples (test split: {sum(map(len, samples.values()))} rows)", t)
    train = [[i for i, s in zip(v["items"], v["split"]) if s == "train"] for v in seqs.values()]
    valid = [p for v in seqs.values() if (p := ev.history_and_target(v, "valid")) is not None and p[0]]
    for name in ("popularity", "itemknn"):
        model = make(name).fit(train, len(item_ids))
        t = stage(f"{name}: fit", t)
        ndcg10(model, valid)
        t = stage(f"{name}: valid NDCG@10 in blocks of 512 users ({len(valid):,} users)", t)
        if args.whole_matrix:
            model.score([h for h, _ in valid])
            t = stage(f"{name}: the whole valid matrix at once (before)", t)
    retries = {"n": 0}
    beam = hf.HFBackend._beam

    def counting(self, prompts, tensors, node_ok, beams, k, length_normalize):
        retries["n"] += len(prompts) == 1 and beams > 2 * k
        return beam(self, prompts, tensors, node_ok, beams, k, length_normalize)

    hf.HFBackend._beam = counting
    latencies, lengths = [], []
    for u in users:
        history = [item_ids[i] for i in pairs[u][0]]
        prompt = rec._prompt("next_item", rec.resolve(history), {})
        lengths.append(len(rec.backend.tokenizer(prompt)["input_ids"]))
        began = time.perf_counter()
        rec.recommend(history, args.k)
        latencies.append(time.perf_counter() - began)
    t = stage(f"llmrec next_item, {len(users)} users, k={args.k}", t)
    lat = np.array(latencies)
    order = np.argsort(-lat)[:5]
    print(f"\nlatency p50 {np.percentile(lat, 50):.2f} s, p95 {np.percentile(lat, 95):.2f} s, max {lat.max():.2f} s; "
          f"wider retries {retries['n']} of {len(users)}; prompt tokens p50 {np.percentile(lengths, 50):.0f}, "
          f"max {max(lengths)}; slowest: " + ", ".join(f"{lat[i]:.1f} s ({lengths[i]} tokens)" for i in order))


if __name__ == "__main__":
    main()
