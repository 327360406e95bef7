"""Collaborative models: popularity, item-kNN and SASRec. They are the baselines of ``llmrec
evaluate`` (fitted on the same split, scored on the same users) and, saved inside an adapter,
the guide of llmrec's decoding (:mod:`llmrec.collab.guide`): one implementation for both.

Each has ``fit(sequences, n_items)`` (per user, train item positions in time order) and
``score(histories) -> (users, n_items)`` scores, higher is better; the evaluator excludes the
history and ranks the held-out item pessimistically (ties against the system).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from llmrec.collab.itemknn import ItemKNN
from llmrec.collab.popularity import Popularity
from llmrec.errors import LlmrecError
from llmrec.evaluation.metrics import rank_from_scores, ranking_metrics

BASELINES = ("popularity", "itemknn", "sasrec")
# Short grids on the valid split (metric: NDCG@10). SASRec's search is over epochs (early stopping).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{"recent": 0}, {"recent": 20}],
    # the guide (collab/guide.py) is tuned on this grid too, less what its size budget rules out
    "itemknn": [{"neighbours": n, "history": h} for n in (10, 20, 50, 200) for h in (0, 20)],
    "sasrec": [{"epochs": 200}],
}


def make(name: str, **options):
    """A baseline by name, with its options."""
    if name == "popularity":
        return Popularity(**options)
    if name == "itemknn":
        return ItemKNN(**options)
    if name == "sasrec":
        from llmrec.collab.sasrec import SASRec

        return SASRec(**options)
    raise ValueError(f"unknown baseline '{name}'")


def model_class(name: str):
    """The class of a collaborative model by name (for loading a saved one)."""
    if name == "sasrec":
        from llmrec.collab.sasrec import SASRec

        return SASRec
    classes = {"popularity": Popularity, "itemknn": ItemKNN}
    if name not in classes:
        raise ValueError(f"unknown collaborative model '{name}'")
    return classes[name]


def tune(name: str, train: list[list[int]], n_items: int, valid: list[tuple[list[int], int]],
         grid: list[dict[str, Any]] | None = None, max_bytes: int = 0):  # fmt: skip
    """Fit ``name`` for each setting of its grid (``GRIDS`` unless given); keep the best NDCG@10
    on the valid pairs among the fits whose saved arrays take at most ``max_bytes`` (0: any).

    Returns the fitted model and what was chosen (setting, valid NDCG@10, seconds, and the
    settings skipped for size). Raises LlmrecError when no setting fits the budget.
    """
    best, began, too_big = None, time.perf_counter(), []
    for setting in grid or GRIDS[name]:
        model = make(name, **setting)
        if name == "sasrec":
            model.fit(train, n_items, validate=lambda m: ndcg10(m, valid))  # early stopping on valid
        else:
            model.fit(train, n_items)
        if max_bytes and (size := state_bytes(model)) > max_bytes:
            too_big.append({**setting, "bytes": size})
            continue
        value = ndcg10(model, valid)
        if best is None or value > best[0]:
            chosen = {**setting, **({"epochs_run": model.epochs_run, "loss": model.loss} if name == "sasrec" else {})}
            best = (value, model, {"setting": chosen, "valid_ndcg@10": round(value, 4)})
    if best is None:
        smallest = min(s["bytes"] for s in too_big)
        raise LlmrecError(f"cf_max_mb={max_bytes / 1e6:g}: no {name} setting fits (the smallest takes "
                          f"{smallest / 1e6:.1f} MB); raise it or choose another cf")  # fmt: skip
    skipped = {"over_budget": too_big} if too_big else {}
    return best[1], {**best[2], **skipped, "tune_s": round(time.perf_counter() - began, 1)}


def state_bytes(model) -> int:
    """Bytes of the arrays a fitted model saves (``model.state()``), what it adds to an adapter."""
    return int(sum(np.asarray(a).nbytes for a in model.state()[1].values()))


# Users scored at once: a (users x items) float64 block is 8 bytes a cell, so all 50k users of a
# 17k-item catalogue would need 6.8 GB; 512 at a time need 70 MB.
SCORE_CHUNK = 512


def score_chunks(model, histories: list[list[int]], chunk: int = SCORE_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, scores of ``chunk`` histories) blocks, so memory does not grow with the users."""
    for start in range(0, len(histories), chunk):
        yield start, model.score(histories[start : start + chunk])


def ndcg10(model, pairs: list[tuple[list[int], int]]) -> float:
    """NDCG@10 of a fitted baseline over (history, target) pairs, the history excluded."""
    ranks = []
    for start, scores in score_chunks(model, [h for h, _ in pairs]):
        ranks += [rank_from_scores(s, pairs[start + i][1], pairs[start + i][0]) for i, s in enumerate(scores)]
    return ranking_metrics(ranks, [10])["ndcg@10"]


__all__ = ["BASELINES", "GRIDS", "ItemKNN", "Popularity", "make", "model_class", "ndcg10", "score_chunks", "tune"]
