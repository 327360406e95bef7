"""Does the yes/no answer help order the collaborative model's top candidates? (valid split)

    cd runs && PYTHONPATH=<wheel> python ../eval/yes_no_rerank.py --data ml-h10-v3 --out yes-no-rerank.json --users 300
    python ../eval/yes_no_rerank.py --analyse yes-no-rerank.json

For valid users drawn as ``llmrec tune`` draws them (seed 0), the adapter's guide gives its top
20 (the history excluded, the adapter's popularity exponent applied); each candidate gets three
scores: the LLM's title log-probability after the next-item prompt (rerank's ``sum``), the same
less the title's prior (``pmi``), and the yes/no answer's log-odds for that candidate, prompted
as a yes/no request of the same user (its newest events, split into liked and disliked by
their ratings; the template's item statistics line included). The scores are saved as they are
computed, so a stopped run can be analysed.

``--analyse`` orders each user's top N (10 or 20) by ``llm + lambda * log p_CF + mu * logit
p_yes`` and chooses (N, lambda, mu) by valid NDCG@10 on one half of the users, scored on the
other (two folds; ties count against the target and go to the smaller mu, then lambda), with
mu fixed at 0 for the fusion as ``tune`` builds it today, and without the title term for the
guide and the yes/no answer alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LAMBDAS = (0, 0.5, 1, 2, 3, 5, 10, 100)
MUS = (0, 0.25, 0.5, 1, 2, 4, 8)
SIZES = (10, 20)


def score(data: Path, out: Path, users: int, model: str | None) -> None:
    from llmrec.collab.guide import normalised, top
    from llmrec.data import prepared
    from llmrec.decoding.recommender import Recommender
    from llmrec.decoding.yes_no import yes_no_prompts
    from llmrec.evaluation.tune import valid_pairs
    from llmrec.files import atomic_write_text

    rec = Recommender.load(model, data)
    pairs = valid_pairs(rec, data, users, 0)
    _, interactions, _ = prepared.read_tables(data)
    interactions = interactions[interactions["split"] != "test"].sort_values(["user_id", "seq"])
    liked = {str(u): g["liked"].tolist() for u, g in interactions.groupby(interactions["user_id"].astype(str))}
    beta = rec.fusion.get("popularity", 0)
    rows, began = [], time.perf_counter()
    for n, (user, (history, target)) in enumerate(pairs.items()):
        cf = normalised(rec.guide.log_scores([history], rec.item_ids, beta)[0], history)
        cands = [i for i, _ in top(cf, max(SIZES))]
        # the newest max_history events, then split by rating, as training prompts show them
        # (a request's liked and disliked lists are joined liked first, then cut to the newest)
        recent = list(zip(history, liked[user][: len(history)]))[-rec.max_history :]
        good = [rec.item_ids[i] for i, ok in recent if ok]
        bad = [rec.item_ids[i] for i, ok in recent if not ok]
        prompts, _, _ = yes_no_prompts(rec, [(good, rec.item_ids[c], bad) for c in cands])
        rows.append({"cands": cands, "cf": cf[cands].tolist(), "target": target,
                     "llm": rec.rerank_scores(rec._prompt("next_item", history, {}), cands),
                     "prior": rec.title_priors(cands), "p_yes": rec.p_yes(prompts)})  # fmt: skip
        if n % 10 == 9 or n == len(pairs) - 1:
            atomic_write_text(out, json.dumps(rows))
            print(f"{n + 1} users, {time.perf_counter() - began:.0f} s", flush=True)


def _rank(row: dict, scores: np.ndarray, n: int) -> float:
    """The target's rank among the top ``n`` by ``scores`` (ties against it; inf when not there)."""
    from llmrec.evaluation.metrics import rank_in_list

    return rank_in_list(row["cands"][:n], scores.tolist(), row["target"])


def _ndcg(ranks: list[float]) -> float:
    from llmrec.evaluation.metrics import ranking_metrics

    return ranking_metrics(ranks, [10])["ndcg@10"]


def _fused(row: dict, kind: str, n: int, lam: float, mu: float, title: bool) -> np.ndarray:
    llm = np.asarray(row["llm"][:n]) - (np.asarray(row["prior"][:n]) if kind == "pmi" else 0.0)
    p = np.clip(np.asarray(row["p_yes"][:n]), 1e-6, 1 - 1e-6)
    return (llm if title else 0.0) + lam * np.asarray(row["cf"][:n]) + mu * np.log(p / (1 - p))


def analyse(path: Path) -> None:
    rows = json.loads(path.read_text())
    folds = np.random.default_rng(0).permutation(len(rows)) % 2
    print(f"{len(rows)} valid users; the guide alone (its top 20 in its order): "
          f"NDCG@10 {_ndcg([_rank(r, np.asarray(r['cf']), 20) for r in rows]):.4f}\n")  # fmt: skip
    print("| order of the guide's top N | yes/no term | NDCG@10 held out | chosen (N, lambda, mu) by fold |")
    print("|---|---|---:|---|")
    for kind, title in (("sum", True), ("pmi", True), ("none", False)):
        for with_yes in (False, True):
            grid = [(n, lam, mu) for n in SIZES for lam in LAMBDAS for mu in (MUS if with_yes else (0,))
                    if title or lam > 0]  # fmt: skip
            held = [0.0] * len(rows)
            chosen = []
            for fold in (0, 1):
                fit = [r for r, f in zip(rows, folds) if f != fold]
                best = max(grid, key=lambda g: (_ndcg([_rank(r, _fused(r, kind, *g, title), g[0]) for r in fit]),
                                                -g[2], -g[1]))  # fmt: skip
                chosen.append(best)
                for i in np.flatnonzero(folds == fold):
                    held[i] = _rank(rows[i], _fused(rows[i], kind, *best, title), best[0])
            name = {"sum": "title log-prob + lambda log p_CF", "pmi": "title pmi + lambda log p_CF",
                    "none": "lambda log p_CF"}[kind]  # fmt: skip
            print(f"| {name} | {'+ mu logit p_yes' if with_yes else '-'} | {_ndcg(held):.4f} | {chosen} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a prepared folder (its valid split is scored)")
    parser.add_argument("--model", default=None, help="an adapter with a guide (default: the shipped one)")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--out", type=Path, help="the scores, JSON")
    parser.add_argument("--analyse", type=Path, help="analyse saved scores instead")
    args = parser.parse_args()
    if args.analyse:
        analyse(args.analyse)
    else:
        score(args.data, args.out, args.users, args.model)


if __name__ == "__main__":
    main()
