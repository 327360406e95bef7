"""The LLM's score of catalogue titles after a prompt, as rerank and ``llmrec tune`` read it.

``sum`` is the title's log-probability after the user's prompt. Most of it is the title's prior:
on the shipped adapter's valid candidates it correlates +0.96 with the same title's
log-probability after the prompt with an empty history (eval/RESULTS.md). ``pmi`` takes that
prior off, leaving how much the history raises the title (their pointwise mutual information):
the part a collaborative model cannot supply.

A title's prior depends on the model, the prompt and the title (and, by rounding, on the
device's arithmetic: priors stored by a CPU tune are fp32, a bf16 GPU process subtracts them
from its own sums; not measured), so ``llmrec tune`` writes
those of the whole catalogue into the adapter (``priors.safetensors``) when it chooses ``pmi``:
a process then starts with them instead of computing each title's the first time it is a
candidate. The file holds the digest of the model (the adapter's weights and base), the prompt
and every title's tokens, and is used only when all match (another catalogue, template,
tokenizer or weights falls back to computing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from llmrec.errors import LlmrecError

LLM_SCORES = ("sum", "pmi")
PRIORS_FILE = "priors.safetensors"


def priors_digest(model: str, prompt: str, answers: Sequence[Sequence[int]]) -> str:
    """What stored priors were computed for: the model (:func:`model_key`), the empty-history
    prompt and each answer's tokens, in order."""
    digest = hashlib.sha256(model.encode("utf-8") + b"|" + prompt.encode("utf-8"))
    for answer in answers:
        digest.update(b"|" + ",".join(str(int(t)) for t in answer).encode("ascii"))
    return digest.hexdigest()


def model_key(adapter_dir: Path, base: str) -> str:
    """The model priors belong to: its base model's name and the sha256 of the adapter's weights."""
    from llmrec.files import sha256_file

    return f"{base}|{sha256_file(Path(adapter_dir) / 'adapter_model.safetensors')}"


class TitleScorer:
    """Teacher-forced scores of answers (a title's tokens) on one backend; keeps each answer's prior.
    Answers come as token lists, so a catalogue that grows (``Recommender.add_items``) needs
    nothing from the scorer."""

    def __init__(self, backend, empty_prompt: Callable[[], str]) -> None:
        self.backend = backend
        self.empty_prompt = empty_prompt  # the next-item prompt with no history
        self.model = ""  # model_key() of an adapter, set at load: what stored priors must have been computed with
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

    def write_priors(self, path: Path, answers: Sequence[Sequence[int]]) -> int:
        """Compute the prior of every answer (those kept are reused) and write them to ``path``
        (:data:`PRIORS_FILE`) with their :func:`priors_digest`; returns the file's size in bytes."""
        from safetensors.numpy import save

        from llmrec.files import atomic_write_bytes

        values = np.asarray(self.priors(answers), dtype=np.float32)
        if not np.isfinite(values).all():
            raise LlmrecError(f"{path}: a title's prior is not finite; nothing written")
        data = save({"logp": values}, metadata={"digest": priors_digest(self.model, self.empty_prompt(), answers)})
        atomic_write_bytes(Path(path), data)
        return len(data)

    def load_stored(self, adapter_dir: Path, answers: Sequence[Sequence[int]], tuned_here: bool) -> None:
        """At load: keep the adapter's stored priors when they match ``answers`` (the catalogue);
        warn when they do not although the adapter was tuned on this catalogue (``tuned_here``)."""
        import warnings

        from llmrec.errors import LlmrecWarning

        path = Path(adapter_dir) / PRIORS_FILE
        if path.is_file() and not self.read_priors(path, answers) and tuned_here:
            # the catalogue tune stored them for, yet another model, template or tokenizer
            warnings.warn(f"{path}: computed for another model, prompt or tokenizer; each title's prior is computed "
                          "the first time it is a candidate (llmrec tune on a copy of the adapter stores them again)",
                          LlmrecWarning, stacklevel=3)  # fmt: skip

    def read_priors(self, path: Path, answers: Sequence[Sequence[int]]) -> bool:
        """Keep the priors stored in ``path`` when they were computed for this prompt and these
        ``answers`` (True); False, and nothing kept, when they were not."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "np") as f:
                digest = (f.metadata() or {}).get("digest")
                values = f.get_tensor("logp")
        except (OSError, SafetensorError) as e:
            raise LlmrecError(f"{path}: not a priors file ({e}); remove it, or run llmrec tune to rewrite it") from None
        if values.ndim != 1 or not np.isfinite(values).all():
            raise LlmrecError(f"{path}: logp must be one finite value per title; run llmrec tune to rewrite it")
        if len(values) != len(answers) or digest != priors_digest(self.model, self.empty_prompt(), answers):
            return False
        self._priors.update(zip((tuple(a) for a in answers), values.tolist()))
        return True
