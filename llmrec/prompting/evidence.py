"""What an explanation may cite: history items sharing genres or tags with the recommended item,
or, for data without attributes, history items chosen by the same users (train co-occurrence)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

MAX_CITED = 2  # history items an explanation cites
MAX_SHARED = 3  # attributes an explanation names


def explanation_evidence(
    history: Sequence[int], target: int, attributes: Sequence[frozenset[str]], titles: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The history items an explanation cites and the attributes they share with the target.

    Cites up to ``MAX_CITED`` history items with the most attributes in common with the target
    (the newest first among equals) and names up to ``MAX_SHARED`` of the shared attributes, the
    most widely shared first. Returns empty lists when nothing is shared: no explanation is
    better than an invented one.
    """
    wanted = attributes[target]
    overlaps = [(len(attributes[h] & wanted), pos, h) for pos, h in enumerate(history)]
    best = sorted((o for o in overlaps if o[0] > 0), key=lambda o: (-o[0], -o[1]))[:MAX_CITED]
    if not best:
        return [], []
    cited = [h for _, _, h in best]
    counts: dict[str, int] = {}
    for h in cited:
        for attr in attributes[h] & wanted:
            counts[attr] = counts.get(attr, 0) + 1
    shared = sorted(counts, key=lambda a: (-counts[a], a))[:MAX_SHARED]
    return [titles[h] for h in cited], shared


# What the explain answer says two items share when the evidence is co-occurrence, not attributes
# ("The user bought "X", which shares an audience with "Y".")
AUDIENCE = "an audience"


def cooccurrence(catalog: pd.DataFrame, interactions: pd.DataFrame):
    """Item x item counts of users who interacted with both, over the train split (scipy CSR)."""
    from scipy import sparse

    train = interactions[interactions["split"] == "train"]
    rows = pd.Series(np.arange(len(catalog)), index=catalog["item_id"]).reindex(train["item_id"]).to_numpy()
    users = pd.factorize(train["user_id"])[0]
    x = sparse.csr_matrix((np.ones(len(train), dtype=np.int32), (users, rows)), shape=(users.max() + 1, len(catalog)))
    counts = (x.T @ x).tocsr()
    counts.sort_indices()
    return counts


def cooccurrence_evidence(history: Sequence[int], target: int, counts, titles: Sequence[str],
                          own: bool) -> tuple[list[str], list[str]]:  # fmt: skip
    """The history items most often chosen by the same users as the target (train split only).

    ``own``: the target is one of this user's train events, so the counts include the user
    themself; one is taken off, so only other users count as evidence.
    """
    start, end = counts.indptr[target], counts.indptr[target + 1]
    if start == end or not len(history):
        return [], []
    columns, values = counts.indices[start:end], counts.data[start:end]
    hist = np.asarray(history, dtype=np.int64)
    pos = np.minimum(np.searchsorted(columns, hist), len(columns) - 1)
    n = np.where(columns[pos] == hist, values[pos], 0) - (1 if own else 0)
    ranked = sorted(((int(c), i, h) for i, (c, h) in enumerate(zip(n, history)) if c > 0 and h != target),
                    key=lambda o: (-o[0], -o[1]))[:MAX_CITED]  # fmt: skip
    if not ranked:
        return [], []
    return [titles[h] for _, _, h in ranked], [AUDIENCE]
