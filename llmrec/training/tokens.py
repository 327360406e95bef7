"""Training rows tokenized once, exactly as TRL's SFTTrainer would, and cached with the data.

TRL tokenizes a prompt/completion row one at a time (the prompt, then prompt + completion, the
completion starting where the two diverge). Here the same two tokenizer calls run over batches
of rows, and the result (``input_ids``, ``completion_mask``) is saved in the prepared folder
under a key of everything it depends on: the tokenizer, the prepared data (whose manifest holds
the template hashes), the task weights, seed and row limit of the mixture. A second run with
the same key (a re-run, a ``--resume``, a sweep over the learning rate) reads it back. TRL sees
an already tokenized dataset and only builds the labels and truncates, as it always does.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from llmrec.data import prepared
from llmrec.errors import LlmrecError
from llmrec.files import atomic_dir

log = logging.getLogger(__name__)
BATCH = 1024


def tokenizer_hash(tokenizer) -> str:
    """SHA-256 of what decides the token ids: the tokenizer's serialized model and its EOS."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(f"{text}\n{tokenizer.eos_token}".encode()).hexdigest()


def cache_key(tokenizer, data_sha: str, tasks: dict[str, float], seed: int, limit: int | None) -> str:
    parts = {"tokenizer": tokenizer_hash(tokenizer), "data": data_sha, "tasks": tasks, "seed": seed, "limit": limit}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_rows(prompts: list[str], completions: list[str], tokenizer) -> dict[str, list]:
    """``input_ids`` and ``completion_mask`` of prompt/completion rows, as TRL computes them."""
    eos = tokenizer.eos_token
    ids, masks = [], []
    for start in range(0, len(prompts), BATCH):
        ps = prompts[start : start + BATCH]
        cs = [c if c.endswith(eos) else c + eos for c in completions[start : start + BATCH]]
        prompt_ids = tokenizer(text=ps)["input_ids"]
        full_ids = tokenizer(text=[p + c for p, c in zip(ps, cs)])["input_ids"]
        for p, f in zip(prompt_ids, full_ids):
            k = _common_prefix(p, f)
            ids.append(f)
            masks.append([0] * k + [1] * (len(f) - k))
    return {"input_ids": ids, "completion_mask": masks}


def tokenized(rows, tokenizer, folder: Path, key: str, write: bool = True):
    """``rows`` (prompt, completion) as a tokenized ``Dataset``, from the cache when it has ``key``."""
    from datasets import Dataset, load_from_disk

    path = prepared.tokenized_path(folder, key)
    if (path / "dataset_info.json").is_file():
        data = load_from_disk(str(path))
        if len(data) == len(rows):
            return data
    data = Dataset.from_dict(tokenize_rows(rows["prompt"], rows["completion"], tokenizer))
    if write:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_dir(path, overwrite=True) as tmp:
                data.save_to_disk(str(tmp))
            data = load_from_disk(str(path))
        except (OSError, LlmrecError) as exc:  # a read-only data folder: train without the cache
            log.info("tokenized rows not cached in %s: %s", path, exc)
    return data

