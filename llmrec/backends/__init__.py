"""Inference backends: a batch of prompts in, a same-order list of plain results out.

Engine types (GenerationConfig, SamplingParams) never leave a backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def renormalize_yes(yes_logprob: float, no_logprob: float) -> float:
    """p(yes) from the raw log-probabilities of the Yes and No answers, renormalised over the two."""
    top = max(yes_logprob, no_logprob)
    if top == -math.inf:
        return 0.5
    a, b = math.exp(yes_logprob - top), math.exp(no_logprob - top)
    return a / (a + b)


def label_token_ids(tokenizer, labels: Sequence[str]) -> list[list[int]]:
    """Token ids of each label as an answer (no special tokens); several ids mean a multi-token label."""
    return [tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
