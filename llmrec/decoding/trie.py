"""The catalogue index as torch tensors, and the logits mask it gives a batch of beams.

Shared by the Hugging Face backend (as a ``LogitsProcessor`` for beam search) and the vLLM
backend (inside its V2-runner logits processor). The state of a row is the trie node its
generated tokens lead to. It is recomputed from the row's own tokens at every step (one
``searchsorted`` per generated position over the whole batch), so it is right however beam
search reorders, drops or duplicates rows; nothing is remembered between steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmrec.decoding.index import CatalogIndex


class TrieTensors:
    """The index arrays on one device, plus the per-request masks of permitted nodes."""

    def __init__(self, index: CatalogIndex, device: str | torch.device = "cpu") -> None:
        trie = index.trie
        self.index = index
        self.device = torch.device(device)
        self.vocab = index.vocab
        self.end_token = index.end_token
        self.token = torch.as_tensor(trie.token, device=self.device)
        self.child_ptr = torch.as_tensor(trie.child_ptr, device=self.device)
        self.edge_key = torch.as_tensor(trie.edge_key, device=self.device)
        self.leaf_item = torch.as_tensor(trie.leaf_item, device=self.device)

    def masks(self, excluded: Sequence[Sequence[int]], allowed: Sequence[Sequence[int] | None] | None = None):
        """(requests, nodes) bool: which nodes still lead to an item each request permits."""
        allowed = allowed if allowed is not None else [None] * len(excluded)
        rows = [self.index.node_mask(ex, al) for ex, al in zip(excluded, allowed)]
        return torch.as_tensor(np.stack(rows), device=self.device)

    def walk(self, generated: torch.Tensor) -> torch.Tensor:
        """Node reached by each row of ``generated`` (rows, steps) from the root; -1 off the trie.

        A row stops at its first end token (what follows is beam search's padding), so a
        finished row's node is the leaf of its item.
        """
        node = torch.zeros(generated.shape[0], dtype=torch.long, device=generated.device)
        done = torch.zeros_like(node, dtype=torch.bool)
        last = len(self.edge_key) - 1
        for step in range(generated.shape[1]):
            token = generated[:, step].long()
            key = node * self.vocab + token
            pos = torch.searchsorted(self.edge_key, key).clamp(max=last)
            found = (self.edge_key[pos] == key) & (node >= 0)
            node = torch.where(done, node, torch.where(found, pos + 1, torch.full_like(node, -1)))
            done |= token == self.end_token
        return node

    def children(self, nodes: torch.Tensor, node_ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, child node) pairs: each row's children that lead to a permitted item.

        ``node_ok`` is (rows, nodes): each row's request mask. Rows off the trie have none.
        """
        rows = nodes.shape[0]
        live = nodes >= 0
        safe = nodes.clamp(min=0)
        start, stop = self.child_ptr[safe], self.child_ptr[safe + 1]
        counts = torch.where(live, stop - start, torch.zeros_like(start))
        row_of = torch.repeat_interleave(torch.arange(rows, device=nodes.device), counts)
        first = torch.repeat_interleave(start, counts)
        offset = torch.arange(len(row_of), device=nodes.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        child = first + offset
        keep = node_ok[row_of, child]
        return row_of[keep], child[keep]

    def allowed(self, nodes: torch.Tensor, node_ok: torch.Tensor, width: int | None = None,
                pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
        """(rows, width) bool: tokens that continue each row's node toward a permitted item.

        ``node_ok`` is (rows, nodes): each row's request mask (``pairs``: its ``children``, when
        already computed). A row that is off the trie or has finished may only emit the end
        token, so its scores stay finite.
        """
        row_of, child = pairs if pairs is not None else self.children(nodes, node_ok)
        # the logits may be wider than the tokenizer (padded vocabularies)
        out = torch.zeros(nodes.shape[0], width or self.vocab, dtype=torch.bool, device=nodes.device)
        out[row_of, self.token[child]] = True
        stuck = ~out.any(dim=1)
        out[stuck, self.end_token] = True
        return out

    def guide_gain(self, bonus: torch.Tensor, nodes: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor]):
        """Per (row, child) pair, ``bonus[row, child] - bonus[row, node]``: the collaborative term
        of that token (``bonus`` is (rows, nodes): lambda times each row's node log-mass)."""
        row_of, child = pairs
        return bonus[row_of, child] - bonus[row_of, nodes[row_of]]


class TrieLogitsProcessor:
    """A transformers ``LogitsProcessor`` that keeps beam search inside the catalogue.

    Beam search hands it log-probabilities and sums what it returns, so with ``bonus`` a finished
    answer scores ``log p_LLM(title) + lambda * log p_CF(item)``: each token adds
    ``lambda * (log M(child) - log M(node))``, which telescopes over the title.

    Args:
        tensors: The index on the model's device.
        node_ok: (requests, nodes) bool masks from ``TrieTensors.masks``.
        prompt_length: Length of the (left-padded) prompts; generated tokens start after it.
        rows_per_request: Beams per request (rows of request r are r*beams .. r*beams+beams-1).
        bonus: Optional (requests, nodes) float: lambda times each request's node log-mass
            (``CatalogIndex.node_log_mass``).
    """

    def __init__(self, tensors: TrieTensors, node_ok: torch.Tensor, prompt_length: int, rows_per_request: int,
                 bonus: torch.Tensor | None = None) -> None:  # fmt: skip
        self.tensors = tensors
        self.node_ok = node_ok
        self.prompt_length = prompt_length
        self.rows_per_request = rows_per_request
        self.bonus = bonus

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        nodes = self.tensors.walk(input_ids[:, self.prompt_length :])
        request = torch.arange(input_ids.shape[0], device=input_ids.device) // self.rows_per_request
        pairs = self.tensors.children(nodes, self.node_ok[request])
        allowed = self.tensors.allowed(nodes, self.node_ok[request], scores.shape[-1], pairs)
        out = scores.masked_fill(~allowed, float("-inf"))
        if self.bonus is not None:
            row_of, child = pairs
            gain = self.tensors.guide_gain(self.bonus[request], nodes, pairs)
            out[row_of, self.tensors.token[child]] += gain.to(out.dtype)
        return out
