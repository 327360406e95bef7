"""Item statistics that a template may show beside a title (yes/no v3: the target's popularity).

Counted over the **train split** only, so a held-out event never reaches a prompt. A train
sample's own event is taken out of its target's counts (``without`` below): the counts a prompt
shows are always other users' events, in training as at inference, where the target is an item
the user has not taken yet. Without that, a liked train target would always show at least one
like of its own and an unseen negative none, a difference no held-out request has.

What a template receives (``target_stats``; None when nothing is known, e.g. a free-text item):

- ``popularity``: 0-100, the share of catalogue items liked by fewer users than the target's
  other users who liked it (a percentile, comparable across data sets of any size);
- ``users``: how many other users took the item in train;
- ``liked_share``: the percentage of those who liked it (None when ``users`` is 0).

None (no line) for a free-text target and for items added after the counts (``add_items``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from llmrec.data.split import item_statistics


class ItemStats:
    """Each catalogue row's train-split counts: users who took it and users who liked it."""

    def __init__(self, count: np.ndarray, liked: np.ndarray) -> None:
        self.count = np.asarray(count, dtype=np.int64)
        self.liked = np.asarray(liked, dtype=np.int64)
        self._sorted = np.sort(self.liked)

    @classmethod
    def from_interactions(cls, catalog: pd.DataFrame, interactions: pd.DataFrame) -> ItemStats:
        """Counts over ``interactions``' train split, in ``catalog``'s row order."""
        counts = item_statistics(interactions, catalog["item_id"].astype(str).tolist())
        return cls(counts["count"], counts["liked"])

    def context(self, row: int | None, without: bool | None = None) -> dict[str, Any] | None:
        """What a template shows for catalogue row ``row``; ``without``: the row's own train event
        to take out (its liked flag), None when the user has none. None for an item added after
        the counts (a row past them): unknown, not unpopular; "taken by nobody" would dress it as
        the rare items most sampled negatives are."""
        if row is None or not 0 <= row < len(self.count):
            return None
        users, liked = int(self.count[row]), int(self.liked[row])
        if without is not None:
            users, liked = users - 1, liked - int(without)
        popularity = int(100 * np.searchsorted(self._sorted, liked, side="left") / max(1, len(self._sorted)))
        return {"popularity": popularity, "users": users,
                "liked_share": round(100 * liked / users) if users else None}  # fmt: skip
