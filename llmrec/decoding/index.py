"""The catalogue index: a token trie over every item's answer, stored as flat arrays.

Each item's answer (its title as the ``next_item`` template renders it) is tokenized exactly as it
appears after the assistant header, ended by the end-of-answer token. The trie is built without
a Python object per node: the token sequences are sorted, and the nodes at each depth are the
distinct prefixes of that length. Nodes are numbered breadth-first, so

- the children of a node are contiguous and sorted by token: ``child_ptr[n]:child_ptr[n + 1]``
  (CSR), and node ``c``'s incoming token is ``token[c]``;
- the items under a node are a contiguous range ``lo[n]:hi[n]`` of the sorted items, so a
  per-request exclusion (a user's history) is one prefix sum over the items, not a walk.

A decoding step is a lookup in ``edge_key = parent * vocab + token`` (sorted), so moving a whole
batch of beams is one ``searchsorted``. Plain numpy: the backends copy the arrays to torch (CPU
or GPU) themselves. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrec.errors import LlmrecError

PAD = -1
# node_log_mass: log-weights more than this many nats under the best permitted item are raised to it
MASS_FLOOR = 30.0


@dataclass(frozen=True)
class TrieArrays:
    """The flat trie. Node 0 is the root; every other node is reached by one token."""

    token: np.ndarray  # (n_nodes,) int64, the token into the node; -1 for the root
    parent: np.ndarray  # (n_nodes,) int64; -1 for the root
    child_ptr: np.ndarray  # (n_nodes + 1,) int64: children of n are child_ptr[n]:child_ptr[n+1]
    lo: np.ndarray  # (n_nodes,) int64: items under n are order[lo[n]:hi[n]]
    hi: np.ndarray
    leaf_item: np.ndarray  # (n_nodes,) int64: the item a complete answer ends at, else -1
    order: np.ndarray  # (n_items,) int64: item index of each sorted position
    edge_key: np.ndarray  # (n_nodes - 1,) int64: parent * vocab + token of nodes 1.., sorted
    vocab: int

    @property
    def n_nodes(self) -> int:
        return len(self.token)


def build_trie(sequences: Sequence[Sequence[int]], vocab: int, names: Sequence[str] | None = None) -> TrieArrays:
    """The trie of ``sequences`` (one per item, each ending with the end-of-answer token).

    Raises LlmrecError if two items have the same token sequence (naming both when ``names`` is
    given) or if one sequence is a prefix of another (impossible when all end with the same
    end-of-answer token that never occurs inside an answer).
    """
    n = len(sequences)
    if n == 0:
        raise LlmrecError("the catalogue is empty: nothing to index")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=n)
    if lengths.min() == 0:
        raise LlmrecError("an item's answer has no tokens")
    width = int(lengths.max())
    grid = np.full((n, width), PAD, dtype=np.int64)
    flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(lengths.sum()))
    grid[np.repeat(np.arange(n), lengths), np.concatenate([np.arange(k) for k in lengths])] = flat
    if grid.max() >= vocab:
        raise LlmrecError(f"token id {int(grid.max())} is outside the vocabulary of {vocab}")
    # lexicographic order; PAD (-1) sorts first, so a prefix would precede its extensions
    order = np.lexsort(grid.T[::-1])
    grid = grid[order]
    same_as_previous = np.zeros((n, width), dtype=bool)
    same_as_previous[1:] = grid[1:] == grid[:-1]
    # prefix_same[i, d]: row i equals row i-1 on columns 0..d
    prefix_same = np.logical_and.accumulate(same_as_previous, axis=1)
    duplicate = np.flatnonzero(prefix_same[:, -1])
    if len(duplicate):
        i = int(duplicate[0])
        a, b = int(order[i - 1]), int(order[i])
        label = f"'{names[a]}' and '{names[b]}'" if names is not None else f"items {a} and {b}"
        raise LlmrecError(f"{label} have the same tokens; catalogue titles must tokenize differently")
    valid = grid != PAD
    ends = lengths[order]

    tokens, parents, los, his, leaves = [np.array([-1])], [np.array([-1])], [np.array([0])], [np.array([n])], []
    parent_of_row = np.zeros(n, dtype=np.int64)  # each row's node at the previous depth (the root first)
    next_id = 1
    for d in range(width):
        rows = np.flatnonzero(valid[:, d])  # rows with a token at depth d, in sorted order
        # A node (a distinct prefix of length d + 1) starts at a row that differs from the
        # previous row somewhere in columns 0..d. Rows sharing a prefix are contiguous.
        is_start = ~prefix_same[rows, d]
        starts = rows[is_start]
        block_end = np.r_[np.flatnonzero(is_start)[1:], len(rows)]  # positions in `rows`
        ids = next_id + np.cumsum(is_start) - 1
        tokens.append(grid[starts, d])
        parents.append(parent_of_row[starts])
        los.append(starts)
        his.append(rows[block_end - 1] + 1)
        leaves.append(np.where(ends[starts] == d + 1, order[starts], -1))
        parent_of_row[rows] = ids
        next_id += len(starts)

    token = np.concatenate(tokens)
    parent = np.concatenate(parents)
    leaf_item = np.concatenate([np.array([-1]), *leaves])
    lo = np.concatenate(los)
    hi = np.concatenate(his)
    # A leaf covers exactly one item; more means one answer is a prefix of another.
    inner_leaf = (leaf_item >= 0) & (hi - lo != 1)
    if inner_leaf.any():
        item = int(leaf_item[np.flatnonzero(inner_leaf)[0]])
        label = f"'{names[item]}'" if names is not None else f"item {item}"
        raise LlmrecError(f"{label}: its tokens are a prefix of another item's; end answers with one end token")
    # Breadth-first ids sort nodes 1.. by parent, so each node's children are contiguous.
    child_ptr = np.empty(len(token) + 1, dtype=np.int64)
    child_ptr[0] = 1
    child_ptr[1:] = 1 + np.cumsum(np.bincount(parent[1:], minlength=len(token)))
    edge_key = parent[1:] * vocab + token[1:]
    return TrieArrays(token, parent, child_ptr, lo, hi, leaf_item, order.astype(np.int64), edge_key, vocab)


def answer_tokens(tokenizer, answers: Sequence[str], prefix: str, end: str) -> list[list[int]]:
    """Token ids of each answer exactly as it follows ``prefix`` (the prompt up to the answer),
    including the end-of-answer token ``end``.

    The prefix is tokenized together with each answer and then cut off, so merges across the
    boundary, a leading space and BOS handling are those of training. Raises LlmrecError if the
    tokenizer does not keep the prefix's tokens as a prefix (the answer would then start
    mid-token, and a trie could not follow it).
    """
    head = tokenizer(prefix, add_special_tokens=True)["input_ids"]
    out = []
    step = 4096  # bounded batches: 100k answers at once would hold every encoding in memory
    for start in range(0, len(answers), step):
        chunk = [prefix + a + end for a in answers[start : start + step]]
        for answer, ids in zip(answers[start : start + step], tokenizer(chunk, add_special_tokens=True)["input_ids"]):
            if ids[: len(head)] != head:
                raise LlmrecError(f"'{answer}': the tokenizer merges it into the prompt's last token")
            out.append(ids[len(head) :])
    return out


class CatalogIndex:
    """Every catalogue item's answer as a token trie, with per-request exclusions.

    Args:
        item_ids: Catalogue item ids, in catalogue order.
        titles: The answer text of each item (its title as the next-item template renders it).
        sequences: Token ids of each answer in the answer position, ending with ``end_token``.
        vocab: Vocabulary size (logit width).
        end_token: The end-of-answer token id.
    """

    def __init__(
        self, item_ids: Sequence[str], titles: Sequence[str], sequences: Sequence[Sequence[int]], vocab: int,
        end_token: int,
    ) -> None:  # fmt: skip
        if not len(item_ids) == len(titles) == len(sequences):
            raise LlmrecError("item_ids, titles and sequences must have one entry per item")
        if len(set(item_ids)) != len(item_ids):
            raise LlmrecError("item ids must be unique")
        for title, seq in zip(titles, sequences):
            if not seq or seq[-1] != end_token or end_token in seq[:-1]:
                raise LlmrecError(f"'{title}': an answer must end with the end-of-answer token, once")
        self.item_ids = list(item_ids)
        self.titles = list(titles)
        self.sequences = [list(map(int, s)) for s in sequences]
        self.vocab = int(vocab)
        self.end_token = int(end_token)
        self.trie = build_trie(self.sequences, self.vocab, self.titles)
        self.position = {item: i for i, item in enumerate(self.item_ids)}
        # the sorted position of each item, to turn exclusions into a mask over the trie's ranges
        self.rank = np.empty(len(self.item_ids), dtype=np.int64)
        self.rank[self.trie.order] = np.arange(len(self.item_ids))

    @classmethod
    def from_tokenizer(
        cls, tokenizer, item_ids: Sequence[str], titles: Sequence[str], prefix: str, end: str | None = None
    ) -> CatalogIndex:
        """Tokenize every title after ``prefix`` (a rendered prompt up to the answer) and index it."""
        end = end if end is not None else tokenizer.eos_token
        end_ids = tokenizer(end, add_special_tokens=False)["input_ids"]
        if len(end_ids) != 1:
            raise LlmrecError(f"the end-of-answer text {end!r} is not a single token for this tokenizer")
        sequences = answer_tokens(tokenizer, titles, prefix, end)
        return cls(item_ids, titles, sequences, len(tokenizer), end_ids[0])

    def __len__(self) -> int:
        return len(self.item_ids)

    def with_items(self, item_ids: Sequence[str], titles: Sequence[str], sequences: Sequence[Sequence[int]]):
        """A new index with items added (cold start: no retraining, just reachable)."""
        clash = [i for i in item_ids if i in self.position]
        if clash:
            raise LlmrecError(f"item id '{clash[0]}' is already in the catalogue")
        return CatalogIndex(
            self.item_ids + list(item_ids), self.titles + list(titles), self.sequences + [list(s) for s in sequences],
            self.vocab, self.end_token,
        )  # fmt: skip

    def _permitted(self, excluded: Sequence[int], allowed: Sequence[int] | None) -> np.ndarray:
        """Which items a request permits, in the trie's sorted item order."""
        if allowed is None:
            ok = np.ones(len(self.item_ids), dtype=bool)
        else:
            ok = np.zeros(len(self.item_ids), dtype=bool)
            ok[self.rank[np.asarray(allowed, dtype=np.int64)]] = True
        if len(excluded):
            ok[self.rank[np.asarray(excluded, dtype=np.int64)]] = False
        return ok

    def _under(self, values: np.ndarray) -> np.ndarray:
        """Per node, the sum of ``values`` (sorted item order) over the items under it: one prefix sum."""
        sums = np.zeros(len(values) + 1, dtype=values.dtype)
        np.cumsum(values, out=sums[1:])
        return sums[self.trie.hi] - sums[self.trie.lo]

    def node_mask(self, excluded: Sequence[int] = (), allowed: Sequence[int] | None = None) -> np.ndarray:
        """Which trie nodes still lead to at least one permitted item.

        Args:
            excluded: Item positions (catalogue order) that must not be returned.
            allowed: If given, only these item positions may be returned (e.g. candidates).
        """
        return self._under(self._permitted(excluded, allowed).astype(np.int64)) > 0

    def node_log_mass(self, log_weights: np.ndarray, excluded: Sequence[int] = (),
                      allowed: Sequence[int] | None = None) -> np.ndarray:  # fmt: skip
        """log M(node): the log of a distribution's mass over the permitted items under each node.

        ``log_weights`` (catalogue order) are the log-weights of the distribution (a collaborative
        model's scores), normalised here over the permitted items, so the root's mass is 1 and a
        leaf's is its item's probability among them. A node's mass is a difference of two prefix
        sums, exact to a few 1e-16 of the total; weights more than ``MASS_FLOOR`` nats under the
        best permitted item are raised to that floor, and no node's mass falls below its
        permitted count times the floor weight, so every permitted node has a finite log-mass
        (the smallest ones approximate). Nodes with no permitted item get -inf.
        """
        ok = self._permitted(excluded, allowed)
        lw = np.asarray(log_weights, dtype=np.float64)[self.trie.order]
        if not ok.any():
            return np.full(self.trie.n_nodes, -np.inf)
        lw = np.maximum(lw - lw[ok].max(), -MASS_FLOOR)
        weights = np.where(ok, np.exp(lw), 0.0)
        total = weights.sum()
        mass = self._under(weights / total)
        # a node's mass is at least its permitted count times the smallest weight: exact, no rounding
        least = self._under(ok.astype(np.float64)) * (np.exp(-MASS_FLOOR) / total)
        with np.errstate(divide="ignore"):
            out = np.log(np.maximum(mass, least))
        # a node over one permitted item (every finished answer's) gets that item's log-mass
        # exactly, free of prefix-sum rounding: which item is the sum of the permitted positions
        count = self._under(ok.astype(np.float64))
        single = np.flatnonzero(count == 1)
        where = self._under(np.where(ok, np.arange(len(ok), dtype=np.float64), 0.0))[single].astype(np.int64)
        out[single] = lw[where] - np.log(total)
        return out

    def step(self, nodes: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """The node each (node, token) pair moves to; -1 where the token leaves the trie."""
        key = np.asarray(nodes, dtype=np.int64) * self.vocab + np.asarray(tokens, dtype=np.int64)
        pos = np.searchsorted(self.trie.edge_key, key)
        pos = np.minimum(pos, len(self.trie.edge_key) - 1)
        found = (self.trie.edge_key[pos] == key) & (np.asarray(nodes) >= 0)
        return np.where(found, pos + 1, -1)

    def allowed_tokens(self, node: int, mask: np.ndarray | None = None) -> np.ndarray:
        """Tokens that continue ``node`` toward a permitted item (sorted)."""
        children = np.arange(self.trie.child_ptr[node], self.trie.child_ptr[node + 1])
        if mask is not None:
            children = children[mask[children]]
        return self.trie.token[children]

    def item_at(self, node: int) -> int:
        """The item position a finished answer ends at, or -1."""
        return int(self.trie.leaf_item[node])

    def save_arrays(self, path: str | Path) -> None:
        """Write the trie arrays (what a vLLM worker needs to walk and mask, no titles)."""
        trie = self.trie
        np.savez(
            path, token=trie.token, parent=trie.parent, child_ptr=trie.child_ptr, lo=trie.lo, hi=trie.hi,
            leaf_item=trie.leaf_item, order=trie.order, edge_key=trie.edge_key, vocab=np.int64(trie.vocab),
            end_token=np.int64(self.end_token),
        )  # fmt: skip

    @classmethod
    def load_arrays(cls, path: str | Path) -> CatalogIndex:
        """An index from ``save_arrays``: it walks, masks and excludes; titles are the item positions."""
        z = np.load(path)
        trie = TrieArrays(
            z["token"], z["parent"], z["child_ptr"], z["lo"], z["hi"], z["leaf_item"], z["order"], z["edge_key"],
            int(z["vocab"]),
        )  # fmt: skip
        index = cls.__new__(cls)  # skips tokenizing and building: the arrays are the index
        index.trie, index.vocab, index.end_token = trie, trie.vocab, int(z["end_token"])
        index.item_ids = [str(i) for i in range(len(trie.order))]
        index.titles, index.sequences = list(index.item_ids), []
        index.position = {item: i for i, item in enumerate(index.item_ids)}
        index.rank = np.empty(len(trie.order), dtype=np.int64)
        index.rank[trie.order] = np.arange(len(trie.order))
        return index
