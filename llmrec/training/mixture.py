"""What a run trains on: the tasks the prepared folder has samples for, their mixture, the valid sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrec.data import prepared
from llmrec.errors import LlmrecError, LlmrecWarning


def task_splits(data: Path, tasks: dict[str, float], explicit: bool, progress: bool) -> tuple[dict, dict[str, str]]:
    """The recipe's tasks that have train samples, and why the others were dropped.

    A task the user named with ``--tasks`` must have samples (an error otherwise); the recipe's
    own tasks are dropped with a one-line warning, so data without item attributes (no
    explanations) or with few items (no rank candidates) trains what it can.
    """
    import warnings

    from datasets import disable_progress_bars

    if not progress:
        disable_progress_bars()  # TRL's tokenization passes print one bar each
    splits, dropped = {}, {}
    for task in tasks:
        try:
            sft = prepared.load_sft(data, task)
        except LlmrecError:
            if explicit:
                raise
            dropped[task] = "not prepared"
            continue
        if len(sft["train"]) == 0:
            if explicit:
                raise LlmrecError(f"sft/{task}: the train split is empty; drop the task or prepare more data")
            dropped[task] = "no train samples"
            continue
        splits[task] = sft
    for task, why in dropped.items():
        warnings.warn(f"sft/{task}: {why}; training without it", LlmrecWarning, stacklevel=3)
    if not splits:
        raise LlmrecError(f"{data}: no task has train samples ({', '.join(tasks)})")
    return splits, dropped


def mix(splits: dict[str, Any], weights: dict[str, float], seed: int, limit: int | None = None):
    """The training mixture: each task's train rows repeated ``floor(w)`` times plus a random
    ``w - floor(w)`` fraction, shuffled; only ``prompt`` and ``completion`` are kept.

    ``limit`` keeps the first rows of the shuffled mixture (a run of ``max_steps`` sees no more),
    so a short run does not tokenize tens of thousands of rows it never uses.
    """
    import numpy as np
    from datasets import concatenate_datasets

    rng = np.random.default_rng(seed)
    parts = []
    for task, weight in weights.items():
        rows = splits[task]["train"].select_columns(["prompt", "completion"])
        n = len(rows)
        if n == 0:
            raise LlmrecError(f"sft/{task}: the train split is empty; drop the task or prepare more data")
        whole, frac = int(weight), weight - int(weight)
        index = np.concatenate([np.tile(np.arange(n), whole), rng.choice(n, round(frac * n), replace=False)])
        parts.append(rows.select(index.astype(int)))
    mixed = concatenate_datasets(parts).shuffle(seed=seed)
    if limit is not None and limit < len(mixed):
        mixed = mixed.select(range(limit))
    return mixed


def valid_sets(splits: dict[str, Any], max_samples: int, seed: int) -> dict[str, Any]:
    """task -> up to ``max_samples`` valid rows (a seeded random subset; 0 = all)."""
    out = {}
    for task, dd in splits.items():
        rows = dd["valid"].select_columns(["prompt", "completion"])
        if max_samples and len(rows) > max_samples:
            rows = rows.shuffle(seed=seed).select(range(max_samples))
        if len(rows):
            out[task] = rows
    return out
