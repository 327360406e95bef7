"""Inference backends behind one typed boundary: plain requests in, same-order plain results out.

A backend owns its engine objects (models, tensors, sampling parameters) and its batch size,
given when it is loaded; callers see only :class:`Backend`. Engine types never leave a backend.
"""

from __future__ import annotations

from llmrec.decoding.backends.base import Backend, ItemSearch, renormalize_yes

__all__ = ["Backend", "ItemSearch", "load_backend", "renormalize_yes"]


def load_backend(name: str, base: str, adapter: str | None, device: str | None, batch_size: int | None) -> Backend:
    """Load the backend ``name`` (``hf`` or ``vllm``) for a base model and optional adapter folder."""
    from llmrec.errors import LlmrecError

    if name == "hf":
        from llmrec.decoding.backends.hf import HFBackend

        return HFBackend.load(base, adapter, device, batch_size)
    if name == "vllm":
        from llmrec.decoding.backends.vllm import VLLMBackend

        return VLLMBackend.load(base, adapter)
    raise LlmrecError(f"unknown backend '{name}' (known: hf, vllm)")
