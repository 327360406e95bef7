"""The backend boundary: the request and protocol types every backend implements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from llmrec.decoding.index import CatalogIndex


@dataclass(frozen=True)
class ItemSearch:
    """One next-item request.

    Attributes:
        prompt: The rendered prompt, ending where the answer starts.
        excluded: Catalogue positions never to return (e.g. the history).
        allowed: If given, the only catalogue positions to consider (e.g. candidates).
        guide: Optional log-weights of a collaborative model over the catalogue (catalogue order).
        guide_weight: lambda: a finished answer then scores ``log p_LLM(title) + lambda * log
            p_CF(item)``, p_CF normalised over the permitted items (0: the LLM alone).
    """

    prompt: str
    excluded: Sequence[int] = ()
    allowed: Sequence[int] | None = None
    guide: Any = None
    guide_weight: float = 0.0

    def bonus(self, index: CatalogIndex):
        """lambda times the node log-masses of this request's guide (finite), or None without one."""
        import numpy as np

        if self.guide is None or not self.guide_weight:
            return None
        log_mass = index.node_log_mass(self.guide, self.excluded, self.allowed)
        # nodes without permitted items are never stepped into: a finite stand-in keeps the sums NaN-free
        return np.where(np.isfinite(log_mass), self.guide_weight * log_mass, -1e9)


@runtime_checkable
class Backend(Protocol):
    """What the ``Recommender`` needs from an inference engine."""

    name: str
    tokenizer: Any  # the model's tokenizer: prompts are rendered and the index built with it
    device: str  # "cpu", "cuda", "cuda:0", ...

    def set_catalog(self, index: CatalogIndex) -> None:
        """Use ``index`` for every later ``top_items`` call (again after items are added)."""

    def top_items(self, requests: Sequence[ItemSearch], k: int, length_normalize: bool = False) -> list[list[tuple[int, float]]]:
        """Per request, up to ``k`` distinct permitted catalogue positions with the answer's
        log-probability (summed over its tokens, or divided by its length), best first."""

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per prompt, the raw log-probability of each label (token ids) as the whole answer."""

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 80) -> list[str]:
        """Free greedy generation up to the end-of-answer token, per prompt."""


def renormalize_yes(yes_logprob: float, no_logprob: float) -> float:
    """p(yes) from the raw log-probabilities of the Yes and No answers, renormalised over the two."""
    top = max(yes_logprob, no_logprob)
    if top == -math.inf:
        return 0.5
    a, b = math.exp(yes_logprob - top), math.exp(no_logprob - top)
    return a / (a + b)
