"""The LLM's score of catalogue titles after a prompt, as rerank and ``llmrec tune`` read it.

``sum`` is the title's log-probability after the user's prompt. Most of it is the title's prior:
on the shipped adapter's valid candidates it correlates +0.96 with the same title's
log-probability after the prompt with an empty history (eval/RESULTS.md). ``pmi`` takes that
prior off, leaving how much the history raises the title (their pointwise mutual information):
the part a collaborative model cannot supply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llmrec.errors import LlmrecError

LLM_SCORES = ("sum", "pmi")


class TitleScorer:
    """Teacher-forced title scores on one backend and catalogue index; keeps each title's prior."""

    def __init__(self, backend, index, empty_prompt: Callable[[], str]) -> None:
        self.backend = backend
        self.index = index
        self.empty_prompt = empty_prompt  # the next-item prompt with no history
        self._priors: dict[tuple[int, ...], float] = {}  # by answer tokens: stable as the catalogue grows

    def sums(self, prompt: str, items: Sequence[int]) -> list[float]:
        """The log-probability of each item's answer after ``prompt`` (one shared prefill)."""
        [row] = self.backend.label_logprobs([prompt], [self.index.sequences[i] for i in items])
        return row

    def priors(self, items: Sequence[int]) -> list[float]:
        """Each item's answer log-probability after the empty-history prompt: what the LLM expects
        of a title before it knows the user. Computed once per answer and kept."""
        keys = [tuple(self.index.sequences[i]) for i in items]
        missing = list(dict.fromkeys(i for i, key in zip(items, keys) if key not in self._priors))
        if missing:
            scores = self.sums(self.empty_prompt(), missing)
            self._priors.update((tuple(self.index.sequences[i]), s) for i, s in zip(missing, scores))
        return [self._priors[key] for key in keys]

    def scores(self, prompt: str, items: Sequence[int], kind: str) -> list[float]:
        """``sum`` (:meth:`sums`) or ``pmi`` (the sum less the prior) of each item after ``prompt``."""
        if kind not in LLM_SCORES:
            raise LlmrecError(f"llm_score '{kind}': expected one of {', '.join(LLM_SCORES)}")
        sums = self.sums(prompt, items)
        if kind == "sum":
            return sums
        return [s - p for s, p in zip(sums, self.priors(items))]
