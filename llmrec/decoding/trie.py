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

    def allowed(self, nodes: torch.Tensor, node_ok: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """(rows, width) bool: tokens that continue each row's node toward a permitted item.

        ``node_ok`` is (rows, nodes): each row's request mask. A row that is off the trie or has
        finished may only emit the end token, so its scores stay finite.
        """
        rows = nodes.shape[0]
        # the logits may be wider than the tokenizer (padded vocabularies)
        out = torch.zeros(rows, width or self.vocab, dtype=torch.bool, device=nodes.device)
        live = nodes >= 0
        safe = nodes.clamp(min=0)
        start, stop = self.child_ptr[safe], self.child_ptr[safe + 1]
        counts = torch.where(live, stop - start, torch.zeros_like(start))
        if int(counts.sum()) > 0:
            row_of = torch.repeat_interleave(torch.arange(rows, device=nodes.device), counts)
            first = torch.repeat_interleave(start, counts)
            offset = torch.arange(len(row_of), device=nodes.device) - torch.repeat_interleave(
                torch.cumsum(counts, 0) - counts, counts
            )
            child = first + offset
            keep = node_ok[row_of, child]
            out[row_of[keep], self.token[child[keep]]] = True
        stuck = ~out.any(dim=1)
        out[stuck, self.end_token] = True
        return out


class TrieLogitsProcessor:
    """A transformers ``LogitsProcessor`` that keeps beam search inside the catalogue.

    Args:
        tensors: The index on the model's device.
        node_ok: (requests, nodes) bool masks from ``TrieTensors.masks``.
        prompt_length: Length of the (left-padded) prompts; generated tokens start after it.
        rows_per_request: Beams per request (rows of request r are r*beams .. r*beams+beams-1).
    """

    def __init__(self, tensors: TrieTensors, node_ok: torch.Tensor, prompt_length: int, rows_per_request: int):
        self.tensors = tensors
        self.node_ok = node_ok
        self.prompt_length = prompt_length
        self.rows_per_request = rows_per_request

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        nodes = self.tensors.walk(input_ids[:, self.prompt_length :])
        request = torch.arange(input_ids.shape[0], device=input_ids.device) // self.rows_per_request
        allowed = self.tensors.allowed(nodes, self.node_ok[request], scores.shape[-1])
        return scores.masked_fill(~allowed, float("-inf"))
