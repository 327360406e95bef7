"""What does rerank's LLM score measure: title length, the title's prior, the user? Valid split.

Run from the repository root after `make install`, on the prepared folder the adapter was trained on:

    .venv/bin/python eval/rerank_length.py --data runs/ml-h10 --out runs/rerank-length

For every valid user (the test split is dropped first, as `llmrec tune` does), the adapter's
collaborative model proposes its top `--candidates` items and the LLM scores each title
(teacher-forced, `Recommender.rerank_scores`: the sum of its answer tokens' log-probabilities).
Two LLM scores are fused with the guide, `llm + lambda * log p_CF`: the sum (what rerank uses)
the mean per answer token (the same sum divided by the answer's token count), and the sum less
the title's prior: its log-probability after the same prompt with an empty history, which no
user's taste enters (`pmi`: the pointwise mutual information of title and history; `pmi/2`:
half the prior taken off). Lambda is chosen on one half of the users and scored on the other
(`held_out_ranks`, as `llmrec tune` decides between the fusion and the guide alone), so no user
is scored with a lambda tuned on it. Prints NDCG@10 per variant with a paired bootstrap interval
of the difference, and saves the per-user scores (`scores.json`) and the priors (`prior.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def held_out(scored: list, grid: list[float], candidates: int) -> tuple[list[float], list[float]]:
    """Per user, the NDCG@10 of the fusion chosen on the other half of the users; the lambdas."""
    from llmrec.evaluation.metrics import ranking_metrics
    from llmrec.evaluation.tune import held_out_ranks

    ranks, by_fold = held_out_ranks(scored, grid, candidates, seed=0)
    return [ranking_metrics([r], [10])["ndcg@10"] for r in ranks], [c["lambda"] for c in by_fold]


def title_priors(rec, args, items: list[int]) -> dict[int, float]:
    """Each item's title log-probability after the next-item prompt with an empty history (as
    rerank's ``pmi`` takes it off: ``Recommender.title_priors``), cached in ``--out``."""
    from llmrec.decoding.recommender import Recommender

    path = args.out / "prior.json"  # like scores.json, kept for one model and data: a new --out for another
    prior = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
    if missing := [i for i in items if i not in prior]:
        rec = rec or Recommender.load(args.model, args.data)
        prior.update(zip(missing, rec.title_priors(missing)))
        path.write_text(json.dumps(prior))
    return prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the prepared folder the adapter was trained on")
    parser.add_argument("--model", default=None, help="adapter folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--candidates", type=int, default=10, help="the guide's top N rescored (the shipped fusion: 10)")
    parser.add_argument("--users", type=int, default=0, help="valid users drawn with seed 0 (0: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "scores.json"
    from llmrec.collab.guide import normalised, top
    from llmrec.decoding.recommender import Recommender
    from llmrec.evaluation.metrics import rank_in_list, ranking_metrics
    from llmrec.evaluation.tune import LAMBDAS, valid_pairs

    rec = None
    if cache.is_file():
        rows = json.loads(cache.read_text())
    else:
        rec = Recommender.load(args.model, args.data)
        rows = []
        for history, target in valid_pairs(rec, Path(args.data), args.users, 0).values():
            cf = normalised(rec.guide.log_scores([history], rec.item_ids)[0], history)
            cands = [i for i, _ in top(cf, args.candidates)]
            llm = rec.rerank_scores(rec._prompt("next_item", history, {}), cands)
            lengths = [len(rec.index.sequences[i]) for i in cands]
            rows.append({"cands": cands, "llm": llm, "cf": cf[cands].tolist(), "lengths": lengths, "target": target})
        cache.write_text(json.dumps(rows))
    prior = title_priors(rec, args, sorted({i for r in rows for i in r["cands"]}))
    grid = sorted(float(x) for x in LAMBDAS)
    variants = {
        "sum": [(r["cands"], np.array(r["llm"]), np.array(r["cf"]), r["target"]) for r in rows],
        "per_token": [(r["cands"], np.array(r["llm"]) / np.array(r["lengths"]), np.array(r["cf"]), r["target"])
                      for r in rows],  # fmt: skip
        **{name: [(r["cands"], np.array(r["llm"]) - share * np.array([prior[i] for i in r["cands"]]),
                   np.array(r["cf"]), r["target"]) for r in rows]
           for name, share in (("pmi", 1.0), ("pmi/2", 0.5))},  # fmt: skip
    }
    alone = [ranking_metrics([rank_in_list(r["cands"], r["cf"], r["target"])], [10])["ndcg@10"] for r in rows]
    results = {"guide alone": (alone, None)}
    results.update({name: held_out(scored, grid, args.candidates) for name, scored in variants.items()})
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(rows), len(rows)) for _ in range(2000)]
    versus = {"sum": np.array(results["sum"][0]), "guide alone": np.array(alone)}
    print(f"{len(rows)} valid users, {args.candidates} candidates; lambda chosen on the other half of the users\n")
    print("| LLM score in the fusion | lambdas (fold 0, fold 1) | held-out NDCG@10 | difference vs. sum [95% CI] "
          "| vs. guide alone [95% CI] |\n|---|---|---:|---|---|")  # fmt: skip
    for name, (ndcg, lambdas) in results.items():
        cells = []
        for base in versus.values():
            d = np.array(ndcg) - base
            ci = np.percentile([d[i].mean() for i in draws], [2.5, 97.5])
            cells.append(f"{d.mean():+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]")
        shown = ", ".join(f"{x:g}" for x in lambdas) if lambdas else "-"
        print(f"| {name} | {shown} | {np.mean(ndcg):.4f} | {' | '.join(cells)} |")
    lengths = np.concatenate([r["lengths"] for r in rows])
    llm = np.concatenate([r["llm"] for r in rows])
    print(f"\ncorrelation of the LLM's summed log-probability with the answer's token count: "
          f"{np.corrcoef(llm, lengths)[0, 1]:+.3f} (over {len(llm)} candidates)")  # fmt: skip
    priors = np.concatenate([[prior[i] for i in r["cands"]] for r in rows])
    print(f"correlation of the LLM's summed log-probability with the title's prior (empty history): "
          f"{np.corrcoef(llm, priors)[0, 1]:+.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
