"""``llmrec tune``: fit the fusion of LLM and collaborative model on the valid split."""

from __future__ import annotations

import argparse

from llmrec.cli.common import quiet_loading
from llmrec.evaluation.tune import TuneOptions
from llmrec.options import add_arguments, from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``tune`` subcommand."""
    p = sub.add_parser(
        "tune",
        help="choose lambda and the yes/no fusion weights on the valid split",
        description="Fit how an adapter's LLM and its collaborative model (cf/) are combined, on the valid split "
        "only: the popularity exponent beta of the collaborative distribution (p_CF times (1 + train interactions) "
        "** beta, by the collaborative model's own NDCG@10), "
        "lambda of llm + lambda * log p_CF (rerank mode, a grid; llm: the title's log-probability, or that "
        "less its prior, chosen on held-out users) and the yes/no weights (Platt "
        "scaling of the LLM, the collaborative score and, when they help on held-out valid users, the item's train "
        "counts). The result goes into the adapter's manifest (fusion); recommend, predict and evaluate use it.",
    )
    add_arguments(p, TuneOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec tune``."""
    from llmrec.evaluation.tune import tune

    options = from_args(TuneOptions, args)
    quiet_loading()
    fusion = tune(options)
    if "next_item" in options.tasks:
        table = fusion["valid"]["by_lambda"]
        line = "  ".join(f"{lam}: {m['ndcg@10']:.4f}" for lam, m in table.items())
        print(f"{options.model}: next item (rerank, {fusion['valid']['users']} valid users, "
              f"{fusion['rerank_candidates']} candidates, LLM score {fusion['llm_score']}), NDCG@10 by lambda: {line}")
        sizes = "  ".join(f"{n}: {m['ndcg@10']:.4f} (lambda {m['lambda']:g}, recall {m['candidate_recall']:.1%})"
                          for n, m in fusion["valid"]["by_candidates"].items())
        print(f"  NDCG@10 by candidates: {sizes}")
        if popularity := fusion["valid"].get("popularity"):
            line = "  ".join(f"{beta}: {m['ndcg@10']:.4f}" for beta, m in popularity["by_exponent"].items())
            print(f"  the collaborative model alone over the catalogue ({popularity['users']} valid users), NDCG@10 by "
                  f"popularity exponent: {line}; chosen {fusion['popularity']:g}")
        print(f"  the collaborative model alone: {fusion['valid']['cf_alone']['ndcg@10']:.4f}")
        if by_score := fusion["valid"].get("held_out_by_llm_score"):
            scores = "  ".join(f"{kind}: {ndcg:.4f}" for kind, ndcg in by_score.items())
            print(f"  the fusion held out (each half of the users tuned on the other), by LLM score: {scores}")
        if fusion["mode"] == "cf":
            print("  chosen: the collaborative model alone (better than the fusion held out on valid; the LLM is "
                  "left out of next-item answers)")
        else:
            print(f"  chosen lambda {fusion['lambda']:g} with {fusion['rerank_candidates']} candidates: they hold "
                  f"the valid item for {fusion['valid']['candidate_recall']:.1%} of users")
        if priors := fusion.get("priors"):
            print(f"  the prior of all {priors['titles']:,} titles is stored in {options.model / priors['file']} "
                  f"({priors['bytes'] / 1e3:,.0f} kB, {priors['seconds']:g} s)")
    if "yes_no" in options.tasks:
        yes_no = fusion["yes_no"]
        v = yes_no["valid"]
        held = "  ".join(f"{name}: {m['auc']:.4f}" for name, m in v["held_out"].items())
        weights = ", ".join(f"{n} {c:.3f}" for n, c in zip(yes_no["features"], yes_no["coef"]))
        print(f"  yes/no ({v['samples']} valid samples): AUC llm {v['llm']['auc']:.4f}, cf {v['cf']['auc']:.4f}, "
              f"popularity {v['popularity']['auc']:.4f}; fused, on held-out users: {held}")
        print(f"  chosen {v['chosen']} (weights {weights}, intercept {yes_no['intercept']:.3f})")
    return 0
