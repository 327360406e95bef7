"""Does starting SASRec's item table from the LLM's reading of the titles help, and for which items?

Run from the repository root after `make install`, on a prepared folder:

    .venv/bin/python eval/text_sasrec.py --data runs/ml-latest-small --out runs/text-sasrec

Fits SASRec (the guide's and the baseline's implementation, default settings, early stopping on
the valid split) with a random item table and with the text-initialised one
(:mod:`llmrec.collab.text`: SmolLM2's mean-pooled hidden states of each title, PCA to the
SASRec width), for each seed; scores every test user's held-out item over the whole catalogue
(history excluded, ties against the model); reports NDCG@10 and HR@10 over all users and split
by the held-out item's train interactions (cold: <= --cold), with a paired bootstrap 95%
interval of text - random over users (seeds averaged per user). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from llmrec.collab import ndcg10
    from llmrec.collab.sasrec import SASRec
    from llmrec.collab.text import project, title_embeddings
    from llmrec.data import prepared
    from llmrec.evaluation.metrics import rank_from_scores

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a prepared folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cold", type=int, default=5, help="train interactions of a cold item (at most)")
    parser.add_argument("--model", help="the LLM that reads the titles (default: the embedded one)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    catalog, interactions, _ = prepared.read_tables(args.data)
    item_ids = catalog["item_id"].astype(str).tolist()
    seqs = prepared.sequences(interactions, {i: n for n, i in enumerate(item_ids)})
    train = [[i for i, s in zip(v["items"], v["split"]) if s == "train"] for v in seqs.values()]
    valid = [p for v in seqs.values() if (p := prepared.history_and_target(v, "valid")) is not None and p[0]]
    test = [p for v in seqs.values() if (p := prepared.history_and_target(v, "test")) is not None and p[0]]
    counts = np.bincount([i for s in train for i in s], minlength=len(item_ids))
    cold = np.array([counts[t] <= args.cold for _, t in test])

    cache = args.out / "title_embeddings.npy"
    began = time.perf_counter()
    if not cache.is_file():
        np.save(cache, title_embeddings(catalog["title"].tolist(), args.model))
    embed_s = time.perf_counter() - began
    text = project(np.load(cache), SASRec().options["dim"])

    ndcg: dict[str, list[np.ndarray]] = {"random": [], "text": []}
    hits: dict[str, list[np.ndarray]] = {"random": [], "text": []}
    runs = []
    for variant in ("random", "text"):
        for seed in args.seeds:
            began = time.perf_counter()
            model = SASRec(seed=seed, item_init=text if variant == "text" else None)
            model.fit(train, len(item_ids), validate=lambda m: ndcg10(m, valid))
            scores = model.score([h for h, _ in test])
            ranks = np.array([rank_from_scores(s, t, h) for s, (h, t) in zip(scores, test)])
            ndcg[variant].append(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0.0))
            hits[variant].append((ranks <= 10).astype(float))
            runs.append({"variant": variant, "seed": seed, "epochs": model.epochs_run,
                         "valid_ndcg@10": round(ndcg10(model, valid), 4), "test_ndcg@10": round(float(ndcg[variant][-1].mean()), 4),
                         "seconds": round(time.perf_counter() - began, 1)})  # fmt: skip
            print(json.dumps(runs[-1]), flush=True)

    rng = np.random.default_rng(0)
    rows = []
    for group, mask in (("all", np.ones(len(test), bool)), (f"cold (<= {args.cold})", cold), ("warm", ~cold)):
        row = {"users": int(mask.sum())}
        for metric, values in (("ndcg@10", ndcg), ("hr@10", hits)):
            a, b = np.mean(values["text"], axis=0)[mask], np.mean(values["random"], axis=0)[mask]
            diff = a - b
            boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(1000)] if len(diff) else [0.0]
            row[metric] = {"text": round(float(a.mean()), 4) if len(a) else None,
                           "random": round(float(b.mean()), 4) if len(b) else None,
                           "diff": round(float(diff.mean()), 4) if len(diff) else None,
                           "ci95": [round(float(np.percentile(boots, 2.5)), 4), round(float(np.percentile(boots, 97.5)), 4)]}  # fmt: skip
        rows.append((group, row))
    (args.out / "text_sasrec.json").write_text(json.dumps({"runs": runs, "groups": dict(rows),
                                                          "embedding_seconds": round(embed_s, 1)}, indent=1))  # fmt: skip
    print(f"\ntitle embeddings: {embed_s:.0f} s; seeds {args.seeds}")
    print("| test users | users | NDCG@10 random | NDCG@10 text | diff [95% CI] | HR@10 random | HR@10 text | diff [95% CI] |")
    print("|---|---:|---:|---:|---|---:|---:|---|")
    for group, r in rows:
        n, h = r["ndcg@10"], r["hr@10"]
        print(f"| {group} | {r['users']} | {n['random']} | {n['text']} | {n['diff']:+.4f} [{n['ci95'][0]:+.4f}, "
              f"{n['ci95'][1]:+.4f}] | {h['random']} | {h['text']} | {h['diff']:+.4f} [{h['ci95'][0]:+.4f}, {h['ci95'][1]:+.4f}] |")


if __name__ == "__main__":
    main()
