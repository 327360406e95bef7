"""Offline metrics, plain numpy (scikit-learn for the classification metrics it has).

Ranking: one relevant item per user (leave-one-out). A system's rank of the held-out item is
pessimistic: items it scores equal to the held-out item count as ranked above it (ties broken
against the system), so a constant scorer cannot look good by the order of item ids. An item
the system did not return within K is a miss. Keys look like RecBole's: ``hr@10``,
``ndcg@10``, ``mrr@10``, ``auc``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def rank_from_scores(scores: np.ndarray, target: int, excluded: Sequence[int] = ()) -> int:
    """1-based pessimistic rank of ``target`` among all items by ``scores`` (higher is better).

    ``excluded`` items (e.g. the user's history) take no place in the ranking.
    """
    scores = np.asarray(scores, dtype=np.float64)
    s = scores[target]
    keep = np.ones(len(scores), dtype=bool)
    keep[list(excluded)] = False
    keep[target] = False
    if math.isnan(s):
        return int(keep.sum()) + 1
    others = scores[keep]
    return 1 + int(np.count_nonzero(others >= s))


def rank_in_list(items: Sequence, scores: Sequence[float] | None, target) -> float:
    """1-based pessimistic rank of ``target`` in a returned list; ``inf`` when it is not there.

    With scores, listed items scoring equal to the target count as above it; without, the list
    order is the ranking.
    """
    items = list(items)
    if target not in items:
        return math.inf
    if scores is None:
        return float(items.index(target) + 1)
    s = scores[items.index(target)]
    return float(1 + sum(1 for item, x in zip(items, scores) if item != target and x >= s))


def ranking_metrics(ranks: Sequence[float], ks: Sequence[int]) -> dict[str, float]:
    """HR@K, NDCG@K (log2, one relevant item) and MRR@K averaged over users."""
    r = np.asarray(ranks, dtype=np.float64)
    if len(r) == 0:
        raise ValueError("no users to average over")
    out = {}
    for k in ks:
        hit = r <= k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 1), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / r, 0.0).mean())
    return out


def expected_calibration_error(labels: Sequence[int], probs: Sequence[float], bins: int = 10) -> float:
    """ECE: the bin-size-weighted mean |accuracy - confidence| over equal-width probability bins."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            total += in_bin.mean() * abs(y[in_bin].mean() - p[in_bin].mean())
    return float(total)


def auc_only(labels: Sequence[int], scores: Sequence[float], users: Sequence[str]) -> dict[str, float]:
    """AUC and user-averaged AUC (over users with both classes) of any real-valued scores."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    out: dict[str, float] = {"auc": float(roc_auc_score(y, s)) if len(set(y.tolist())) == 2 else float("nan")}
    per_user = []
    users = np.asarray(users)
    for u in np.unique(users):
        mask = users == u
        if len(set(y[mask].tolist())) == 2:
            per_user.append(roc_auc_score(y[mask], s[mask]))
    out["uauc"] = float(np.mean(per_user)) if per_user else float("nan")
    out["uauc_users"] = len(per_user)
    return out


def yes_no_metrics(labels: Sequence[int], probs: Sequence[float], users: Sequence[str]) -> dict[str, float]:
    """AUC, user-averaged AUC (users with both classes), accuracy and F1 at 0.5, ECE."""
    from sklearn.metrics import accuracy_score, f1_score

    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=np.float64)
    return {
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "f1": float(f1_score(y, p >= 0.5, zero_division=0.0)),
        "ece": expected_calibration_error(y, p),
        **auc_only(y, p, users),
    }
