"""Engine-agnostic beam search over the catalogue index.

An engine only has to answer "the raw log-probabilities of these tokens after this prefix"
(``StepFn``): vLLM answers it with ``logprob_token_ids``, the transformers backend with a forward
pass. The search, the trie walk and the scores live here, in numpy, so the logic the vLLM
backend relies on runs (and is tested) on a CPU with the transformers backend as the engine.

Scores are sums of raw model log-probabilities (the same numbers as the transformers backend's
beam search), plus the collaborative term when a request has one, optionally divided by the
answer length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.decoding.index import CatalogIndex

# (request index, answer tokens so far, candidate next tokens) -> raw log-probs of those tokens
StepFn = Callable[[list[tuple[int, list[int], np.ndarray]]], list[np.ndarray]]


@dataclass
class _Beam:
    tokens: list[int]
    node: int
    score: float


def beam_search(
    step: StepFn,
    index: CatalogIndex,
    node_masks: Sequence[np.ndarray],
    k: int,
    beams: int | None = None,
    length_normalize: bool = False,
    bonuses: Sequence[np.ndarray | None] | None = None,
) -> list[list[tuple[int, float]]]:
    """Top-``k`` items per request; ``node_masks[r]`` is request r's ``CatalogIndex.node_mask``.

    ``bonuses[r]`` (optional, per node: lambda times ``CatalogIndex.node_log_mass``) adds the
    collaborative term ``bonus[child] - bonus[node]`` to each step, as the transformers backend's
    ``TrieLogitsProcessor`` does.
    """
    bonuses = bonuses if bonuses is not None else [None] * len(node_masks)
    width = max(beams or k, k)
    n = len(node_masks)
    alive = [[_Beam([], 0, 0.0)] if node_masks[r][0] else [] for r in range(n)]
    done: list[list[tuple[int, float, int]]] = [[] for _ in range(n)]  # (item, score, length)

    def rank(score: float, length: int) -> float:
        return score / length if length_normalize else score

    depth = max(len(s) for s in index.sequences)
    for _ in range(depth):
        queries, owners = [], []
        for r in range(n):
            for beam in alive[r]:
                tokens = index.allowed_tokens(beam.node, node_masks[r])
                if len(tokens):
                    queries.append((r, beam.tokens, tokens))
                    owners.append(beam)
        if not queries:
            break
        answers = step(queries)
        candidates: list[list[_Beam]] = [[] for _ in range(n)]
        for (r, _, tokens), beam, logprobs in zip(queries, owners, answers):
            nodes = index.step(np.full(len(tokens), beam.node), tokens)
            gains = np.asarray(logprobs, dtype=np.float64)
            if bonuses[r] is not None:
                gains = gains + (bonuses[r][nodes] - bonuses[r][beam.node])
            for token, node, lp in zip(tokens.tolist(), nodes.tolist(), gains.tolist()):
                new = _Beam(beam.tokens + [token], node, beam.score + lp)
                item = index.item_at(node)
                if item >= 0:
                    done[r].append((item, new.score, len(new.tokens)))
                else:
                    candidates[r].append(new)
        for r in range(n):
            candidates[r].sort(key=lambda b: -rank(b.score, len(b.tokens)))
            alive[r] = candidates[r][:width]
            finished = sorted(done[r], key=lambda d: -rank(d[1], d[2]))
            # Scores only fall as an answer grows (log-probs and log-mass ratios are <= 0): once k
            # answers beat every live beam, stop.
            if not length_normalize and len(finished) >= k and alive[r] and finished[k - 1][1] >= alive[r][0].score:
                alive[r] = []
    out = []
    for r in range(n):
        best = sorted(done[r], key=lambda d: -rank(d[1], d[2]))[:k]
        out.append([(item, rank(score, length)) for item, score, length in best])
    return out
