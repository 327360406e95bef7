"""``llmrec tune``: the fusion of LLM and collaborative model, chosen on the valid split only.

Next item: for each valid user, the collaborative model's top ``rerank_candidates`` items
(history excluded) are scored once by the LLM (teacher-forced title log-probability, one shared
prefill); every lambda of the grid then ranks them by ``log p_LLM + lambda * log p_CF`` and the
lambda with the best NDCG@10 (the smaller on a tie) is kept, so the grid costs one LLM pass.
The number of candidates is chosen the same way among 10, 20 and ``rerank_candidates`` (the top
n of the scored lists): fewer candidates mean less LLM work per request.
yes/no: ``p = sigmoid(a * logit p_LLM + b * log p_CF(target) + c)`` fitted by logistic
regression (Platt scaling) on the valid yes/no samples. Both go into the adapter manifest
(``fusion``), which ``recommend``/``predict``/``evaluate`` then use. Only events of the train and
valid splits are read: the histories end before the valid event, and the test split is dropped
before anything is built from the interactions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.collab.guide import fused_yes, logit, normalised, target_log_probs, top
from llmrec.errors import LlmrecError
from llmrec.options import option, parse_list

# lambda = 0 is the LLM alone (within the candidates); the largest is the collaborative order
LAMBDAS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)


@dataclass(kw_only=True)
class TuneOptions:
    """What ``tune`` fits; the CLI fills it from flags."""

    model: Path = option(help="an llmrec adapter folder with a collaborative model (cf/)", parse=Path)
    data: str | None = option(None, "the prepared folder it was trained on (default: embedded ml-latest-small)")
    device: str | None = option(None, "cpu or cuda (default: cuda when available)")
    users: int = option(0, "valid users for the next-item lambda (0 = all), drawn with --seed")
    seed: int = option(0, "seed of the user sample")
    candidates: int = option(50, "collaborative candidates the LLM rescores (rerank mode)")
    lambdas: list[str] = option(default_factory=lambda: [str(x) for x in LAMBDAS], parse=parse_list,
                                help="the lambda grid, comma-separated")  # fmt: skip
    tasks: list[str] = option(default_factory=lambda: ["next_item", "yes_no"], parse=parse_list,
                              help="what to tune: next_item,yes_no")  # fmt: skip
    progress: bool = option(True, "no progress bars", flag="--no-progress")
    grid: list[float] = option(default_factory=list, cli=False)

    def __post_init__(self) -> None:
        try:
            self.grid = sorted({float(x) for x in self.lambdas})
        except ValueError:
            raise LlmrecError(f"--lambdas: expected numbers, got {','.join(self.lambdas)}") from None
        if not self.grid or any(not np.isfinite(x) or x < 0 for x in self.grid):
            raise LlmrecError("--lambdas: every lambda must be a finite number >= 0")
        if self.candidates < 1 or self.users < 0:
            raise LlmrecError("--candidates must be >= 1 and --users >= 0")
        unknown = [t for t in self.tasks if t not in ("next_item", "yes_no")]
        if unknown or not self.tasks:
            raise LlmrecError(f"--tasks: expected next_item and/or yes_no, got {','.join(self.tasks) or '(none)'}")


def valid_pairs(rec, folder: Path, users: int, seed: int) -> dict[str, tuple[list[int], int]]:
    """Per valid user (all, or ``users`` drawn with ``seed``): the history before the valid event
    and the valid item, in catalogue positions. The test split is dropped first."""
    from llmrec.data import prepared
    from llmrec.evaluation.evaluate import select_users

    _, interactions, _ = prepared.read_tables(folder)
    interactions = interactions[interactions["split"] != "test"]
    seqs = prepared.sequences(interactions, rec.position)
    chosen = select_users(interactions, "valid", users, seed, (0, 1))
    return {u: p for u in chosen if (p := prepared.history_and_target(seqs[u], "valid")) is not None and p[0]}


def tune_next_item(rec, pairs: dict[str, tuple[list[int], int]], options: TuneOptions) -> dict[str, Any]:
    """NDCG@10 and HR@10 of rerank mode for every lambda of the grid; the best lambda."""
    from tqdm.auto import tqdm

    from llmrec.evaluation.metrics import rank_in_list, ranking_metrics

    scored = []
    began = time.perf_counter()
    for history, target in tqdm(pairs.values(), desc="tune next_item", disable=not options.progress):
        cf = normalised(rec.guide.log_scores([history], rec.item_ids)[0], history)
        cands = [i for i, _ in top(cf, options.candidates)]
        llm = np.asarray(rec.rerank_scores(rec._prompt("next_item", history, {}), cands))
        scored.append((cands, llm, cf[cands], target))
    per_user_s = (time.perf_counter() - began) / max(1, len(scored))

    def by_lambda(n: int) -> dict[str, dict[str, float]]:
        """NDCG@10 and HR@10 of each lambda when only the collaborative top ``n`` are rescored."""
        table = {}
        for lam in options.grid:
            ranks = [rank_in_list(cands[:n], (llm[:n] + lam * cf[:n]).tolist(), target)
                     for cands, llm, cf, target in scored]
            m = ranking_metrics(ranks, [10])
            table[f"{lam:g}"] = {"ndcg@10": round(m["ndcg@10"], 5), "hr@10": round(m["hr@10"], 5)}
        return table

    # fewer candidates cost proportionally less LLM work (rerank scores each title): the candidate
    # count is chosen with lambda, the smaller on a tie; the candidates come in collaborative order,
    # so the top n of the scored lists are what rerank with n candidates would score
    sizes = sorted({n for n in (10, 20) if n < options.candidates} | {options.candidates})
    tables = {n: by_lambda(n) for n in sizes}
    by_size = {}
    for size in sizes:
        lam = max(options.grid, key=lambda x: (tables[size][f"{x:g}"]["ndcg@10"], -x))
        recall = float(np.mean([target in cands[:size] for cands, _, _, target in scored]))
        by_size[str(size)] = {"lambda": lam, **tables[size][f"{lam:g}"], "candidate_recall": round(recall, 5)}
    n = max(sizes, key=lambda size: (by_size[str(size)]["ndcg@10"], -size))
    best = by_size[str(n)]["lambda"]
    return {"mode": "rerank", "lambda": best, "rerank_candidates": n,
            "valid": {"users": len(scored), "by_lambda": tables[n], "by_candidates": by_size,
                      "candidate_recall": by_size[str(n)]["candidate_recall"],
                      "seconds_per_user": round(per_user_s, 3), "seconds_per_user_at": options.candidates}}  # fmt: skip


def fit_platt(p_llm: np.ndarray, s_cf: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """(a, b, c) of sigmoid(a * logit p_LLM + b * s_CF + c) by maximum likelihood (lightly regularised)."""
    from sklearn.linear_model import LogisticRegression

    x = np.column_stack([logit(p_llm), s_cf])
    fit = LogisticRegression(C=100.0, max_iter=1000).fit(x, labels)
    return {"a": float(fit.coef_[0][0]), "b": float(fit.coef_[0][1]), "c": float(fit.intercept_[0])}


def tune_yes_no(rec, folder: Path, pairs_all: dict[str, tuple[list[int], int]]) -> dict[str, Any]:
    """Platt weights on every valid yes/no sample, with the valid AUC / ECE of each part."""
    from llmrec.data import prepared
    from llmrec.evaluation.metrics import auc_only, yes_no_metrics

    rows = [r for r in prepared.load_sft(folder, "yes_no", "valid") if str(r["user_id"]) in pairs_all]
    if len({int(r["label"]) for r in rows}) < 2:
        raise LlmrecError(f"{folder}: the valid yes/no samples need both labels to fit the fusion")
    labels = np.asarray([int(r["label"]) for r in rows])
    users = [str(r["user_id"]) for r in rows]
    p_llm = np.asarray(rec.p_yes([r["prompt"] for r in rows]))
    s_cf = target_log_probs(rec.guide, [pairs_all[u][0] for u in users], [rec.position[str(r["item_id"])] for r in rows],
                            rec.item_ids)  # fmt: skip
    weights = fit_platt(p_llm, s_cf, labels)
    fused = fused_yes(p_llm, s_cf, weights)
    report = {name: {k: round(v, 5) for k, v in yes_no_metrics(labels, scores, users).items() if k in ("auc", "uauc", "ece")}
              for name, scores in (("llm", p_llm), ("fused", fused))}  # fmt: skip
    report["cf"] = {k: round(auc_only(labels, s_cf, users)[k], 5) for k in ("auc", "uauc")}  # not a probability
    return {**weights, "valid": {"samples": len(rows), **report, "note": "fitted and measured on the same valid samples"}}


def tune(options: TuneOptions) -> dict[str, Any]:
    """Tune the fusion of ``options.model`` and write it into its manifest; returns it."""
    from llmrec.decoding.recommender import Recommender
    from llmrec.files import atomic_write_text
    from llmrec.prompting.prepare import prepared_folder
    from llmrec.training.adapter import MANIFEST

    manifest_path = Path(options.model) / MANIFEST
    if not manifest_path.is_file():
        raise LlmrecError(f"{options.model}: not an llmrec adapter folder (no {MANIFEST})")
    folder = prepared_folder(options.data, options.progress)
    rec = Recommender.load(options.model, folder, device=options.device, batch_size=1)
    if rec.guide is None:
        raise LlmrecError(f"{options.model}: no collaborative model (cf/) to fuse with; train with --cf")
    manifest = json.loads(manifest_path.read_text())
    fusion = dict(manifest.get("fusion") or {})
    if "next_item" in options.tasks:
        fusion.update(tune_next_item(rec, valid_pairs(rec, folder, options.users, options.seed), options))
    if "yes_no" in options.tasks:
        fusion["yes_no"] = tune_yes_no(rec, folder, valid_pairs(rec, folder, 0, options.seed))
    fusion["tuned_on"] = {"data": str(folder), "split": "valid",
                          "data_manifest": rec.info.get("hashes", {})}  # fmt: skip
    manifest["fusion"] = fusion
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return fusion
