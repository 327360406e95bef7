"""What ``Recommender.load`` is told to load (``LoadOptions``, shared by the commands that load a
model) and the adapter manifest it reads; light, so that command-line parsing imports no model code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.options import option
from llmrec.training.adapter import MANIFEST as ADAPTER_MANIFEST
from llmrec.training.adapter import read_manifest, shipped_adapter_dir

BACKENDS = ("hf", "vllm")


@dataclass(kw_only=True)
class LoadOptions:
    """Which model, catalogue and engine ``Recommender.load`` uses (shared by recommend, predict, evaluate)."""

    model: str | None = option(None, "an llmrec adapter folder, or a base model (default: the shipped adapter)")
    data: str | None = option(
        None, "a prepared folder or raw data as prepare takes it (default: embedded ml-latest-small)"
    )
    backend: str = option("hf", "inference engine", choices=BACKENDS)
    device: str | None = option(None, "cpu or cuda (default: cuda when available)")



def adapter_manifest(model: str | Path | None) -> dict[str, Any] | None:
    """The llmrec manifest of ``model`` (default: the shipped adapter); None for a bare base model."""
    folder = Path(model) if model is not None else shipped_adapter_dir()
    return read_manifest(folder) if (folder / ADAPTER_MANIFEST).is_file() else None
