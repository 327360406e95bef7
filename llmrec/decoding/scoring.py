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
    """Teacher-forced scores of answers (a title's tokens) on one backend; keeps each answer's prior.
    Answers come as token lists, so a catalogue that grows (``Recommender.add_items``) needs
    nothing from the scorer."""

    def __init__(self, backend, empty_prompt: Callable[[], str]) -> None:
        self.backend = backend
        self.empty_prompt = empty_prompt  # the next-item prompt with no history
        self._priors: dict[tuple[int, ...], float] = {}

    def sums(self, prompt: str, answers: Sequence[Sequence[int]]) -> list[float]:
        """The log-probability of each answer after ``prompt`` (one shared prefill)."""
        [row] = self.backend.label_logprobs([prompt], [list(a) for a in answers])
        return row

    def priors(self, answers: Sequence[Sequence[int]]) -> list[float]:
        """Each answer's log-probability after the empty-history prompt: what the LLM expects of a
        title before it knows the user. Computed once per answer and kept."""
        keys = [tuple(a) for a in answers]
        missing = list(dict.fromkeys(key for key in keys if key not in self._priors))
        if missing:
            self._priors.update(zip(missing, self.sums(self.empty_prompt(), missing)))
        return [self._priors[key] for key in keys]

    def scores(self, prompt: str, answers: Sequence[Sequence[int]], kind: str) -> list[float]:
        """``sum`` (:meth:`sums`) or ``pmi`` (the sum less the prior) of each answer after ``prompt``."""
        if kind not in LLM_SCORES:
            raise LlmrecError(f"llm_score '{kind}': expected one of {', '.join(LLM_SCORES)}")
        sums = self.sums(prompt, answers)
        if kind == "sum":
            return sums
        return [s - p for s, p in zip(sums, self.priors(answers))]
