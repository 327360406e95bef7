"""Item-based k-nearest neighbours: cosine similarity of items over users' train histories."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# added to summed similarities before the log (similarities are cosines, at most 1 each)
SMOOTHING = 1e-4


class ItemKNN:
    """Score(user, j) = sum over the user's last ``history`` items i of sim(i, j), keeping each
    item's ``neighbours`` most similar items. Similarity: cosine with shrinkage
    (co-count / (sqrt(n_i * n_j) + shrink)).

    Args:
        neighbours: Similar items kept per item.
        shrink: Shrinkage for items with few interactions.
        history: Newest history items that vote (0 = all).
    """

    def __init__(self, neighbours: int = 100, shrink: float = 10.0, history: int = 0) -> None:
        self.neighbours = neighbours
        self.shrink = shrink
        self.history = history
        self.sim = None

    def fit(self, sequences: Sequence[Sequence[int]], n_items: int) -> ItemKNN:
        from scipy import sparse

        rows = np.concatenate([np.full(len(set(s)), u) for u, s in enumerate(sequences)])
        cols = np.concatenate([np.fromiter(set(s), dtype=np.int64) for s in sequences])
        x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sequences), n_items))
        co = (x.T @ x).tocsr().astype(np.float64)
        co.setdiag(0.0)
        co.eliminate_zeros()
        n = np.asarray(x.sum(axis=0)).ravel()
        norm = np.sqrt(n)
        co = co.tocoo()
        values = co.data / (norm[co.row] * norm[co.col] + self.shrink)
        sim = sparse.csr_matrix((values, (co.row, co.col)), shape=(n_items, n_items))
        self.sim = _top_per_row(sim, self.neighbours)
        return self

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        from scipy import sparse

        rows, cols = [], []
        for u, h in enumerate(histories):
            h = h[-self.history :] if self.history else h
            rows += [u] * len(h)
            cols += list(h)
        x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(histories), self.sim.shape[0]))
        return np.asarray((x @ self.sim).todense())

    def log_scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Log-weights of a distribution over items: summed similarities, smoothed by ``SMOOTHING``
        so an item no history item is similar to keeps a small mass."""
        return np.log(self.score(histories) + SMOOTHING)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        sim = self.sim.tocsr()
        config = {"neighbours": self.neighbours, "shrink": self.shrink, "history": self.history}
        arrays = {"data": sim.data.astype(np.float32), "indices": sim.indices.astype(np.int32),
                  "indptr": sim.indptr.astype(np.int64), "shape": np.asarray(sim.shape, dtype=np.int64)}  # fmt: skip
        return config, arrays

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> ItemKNN:
        from scipy import sparse

        model = cls(**config)
        shape = tuple(int(n) for n in arrays["shape"])
        model.sim = sparse.csr_matrix((arrays["data"].astype(np.float64), arrays["indices"], arrays["indptr"]), shape=shape)
        return model


def _top_per_row(m, k: int):
    """Keep the ``k`` largest entries of each row of a CSR matrix."""
    from scipy import sparse

    m = m.tocsr()
    rows, cols, vals = [], [], []
    for i in range(m.shape[0]):
        start, end = m.indptr[i], m.indptr[i + 1]
        if end == start:
            continue
        data, idx = m.data[start:end], m.indices[start:end]
        keep = np.argsort(-data)[:k]
        rows.append(np.full(len(keep), i))
        cols.append(idx[keep])
        vals.append(data[keep])
    if not rows:
        return sparse.csr_matrix(m.shape)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape)
