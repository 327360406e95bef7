"""Most-interacted items first: the floor every recommender must beat."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Popularity:
    """Scores every item by its number of training interactions (optionally only the recent ones).

    Args:
        recent: If > 0, count only each user's newest ``recent`` interactions (a cheap recency
            bias, tuned on the valid split); 0 counts all.
    """

    def __init__(self, recent: int = 0) -> None:
        self.recent = recent
        self.counts: np.ndarray | None = None

    def fit(self, sequences: Sequence[Sequence[int]], n_items: int) -> Popularity:
        counts = np.zeros(n_items, dtype=np.float64)
        for seq in sequences:
            seq = seq[-self.recent :] if self.recent else seq
            np.add.at(counts, np.asarray(seq, dtype=np.int64), 1.0)
        self.counts = counts
        return self

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))

    def log_scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Log-weights of a distribution over items (count + 1: an unseen item is not impossible)."""
        return np.log1p(self.score(histories))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"recent": self.recent}, {"counts": self.counts.astype(np.float32)}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> Popularity:
        model = cls(**config)
        model.counts = arrays["counts"].astype(np.float64)
        return model
