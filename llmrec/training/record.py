"""What a finished training run records: its statistics (steps, samples, tokens, time, memory,
device) and the adapter manifest (``llmrec_adapter.json``) that carries them with the base model,
data, templates, recipe and valid metrics."""

from __future__ import annotations

import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmrec import __version__
from llmrec.models import EMBEDDED_MODEL
from llmrec.training.recipe import Recipe

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# the sample settings that shape a prompt (not which samples exist)
PROMPT_SETTINGS = ("max_history", "max_length")


def _peak_memory_mib(cuda: bool) -> int:
    if cuda:
        import torch

        return int(torch.cuda.max_memory_allocated() / 2**20)
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB


def _versions() -> dict[str, str]:
    """The installed versions of llmrec's stack (what ``llmrec env`` reports), for the manifest."""
    from llmrec.environment import library_versions

    return {name: v for name, v in library_versions().items() if v is not None}


def token_segments(log_history: list[dict]) -> list[int]:
    """Tokens trained in each part of a run: TRL's logged ``num_tokens`` counts from the start of
    each process, so a resumed run's count drops where it was resumed; each part's last count."""
    parts: list[int] = []
    last = None
    for entry in log_history:
        if "num_tokens" not in entry:
            continue
        value = int(entry["num_tokens"])
        if last is None or value < last:
            parts.append(value)
        else:
            parts[-1] = value
        last = value
    return parts


def run_stats(trainer, result, recipe: Recipe, run, precision: str, per_step: int, started: float):
    """Steps, samples, tokens, time, memory and device of a finished run (the manifest's ``training``).

    ``run`` is train's ``_Run`` (where it resumed from); ``per_step``: samples an optimizer step."""
    import torch
    from accelerate import PartialState

    cuda = torch.cuda.is_available()
    steps = trainer.state.global_step
    # train_runtime covers this process's part of a resumed run only: rates are over that part
    seconds = float(result.metrics.get("train_runtime", 0.0))
    resumed_at = int(Path(run.resume_from).name.split("-")[-1]) if run.resume_from else 0
    samples = steps * per_step
    segments = token_segments(trainer.state.log_history)
    tokens = sum(segments)
    tokens_here = segments[-1] if resumed_at and segments else tokens
    if steps <= resumed_at:  # resumed at its last checkpoint: no step ran here, so no rate either
        seconds = tokens_here = 0
    if not tokens:  # a run shorter than logging_steps logs no count: take it from the tokenized rows
        lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
        tokens = tokens_here = round(sum(lengths) * samples / max(1, len(lengths)))
    best = trainer.state.best_model_checkpoint
    return {
        "steps": steps, "samples": samples, "tokens": tokens, "seconds": round(seconds, 1),
        "steps_this_part": steps - resumed_at,
        "samples_per_second": (steps - resumed_at) * per_step / seconds if seconds else 0.0,
        "tokens_per_second": tokens_here / seconds if seconds else 0.0,
        "peak_memory_mib": _peak_memory_mib(cuda),
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores)",
        "precision": precision,
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
        "processes": PartialState().num_processes,
        "resumed_from": Path(run.resume_from).name if run.resume_from else None,
        "stopped_early": bool(recipe.max_steps and steps < recipe.max_steps
                              or not recipe.max_steps and steps < trainer.state.max_steps),
        "best_checkpoint": Path(best).name if best else None,
        # the training loss as logged (every logging_steps): the run's learning curve
        "log": [{"step": e["step"], "loss": round(float(e["loss"]), 4)} for e in trainer.state.log_history if "loss" in e],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def build_manifest(recipe: Recipe, run, metrics: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """The adapter manifest (``llmrec_adapter.json``): base, data, templates, recipe, metrics, run
    (``run``: train's ``_Run``, for the base model's name and the prepared data's manifest)."""
    data = run.prepared
    hub_id = EMBEDDED_HUB_ID if run.base_name == EMBEDDED_MODEL else (None if Path(run.base_name).exists() else run.base_name)
    return {
        "llmrec_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {"name": run.base_name, "hub_id": hub_id,
                       "quantization": "nf4-4bit" if recipe.load_in_4bit else None},  # fmt: skip
        "data": {
            "name": Path(data["source"]["data"]).name,
            "source": data["source"]["data"],
            "catalog_hash": data["hashes"]["catalog"],
            "interactions_hash": data["hashes"]["interactions"],
            "manifest_sha256": run.data_sha,
            "item_noun": data.get("item_noun"),
            "tokenizer": data.get("tokenizer"),
            # the prompt shape the adapter learned; recommend/predict render with it
            "prompts": {k: data.get("samples", {}).get(k) for k in PROMPT_SETTINGS},
        },
        "templates": {t: data["templates"][t] for t in recipe.tasks},
        "recipe": recipe.to_dict(),
        "versions": _versions(),
        "metrics": {"valid": metrics},
        "training": stats,
    }
