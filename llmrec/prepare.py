"""``llmrec prepare``: raw logs in, a folder of clean tables, SFT datasets and a manifest out."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec import __version__
from llmrec import data as datasets_io
from llmrec.atomic import atomic_dir, check_writable, sha256_tree
from llmrec.data.clean import CleanOptions, clean
from llmrec.data.split import leave_one_out
from llmrec.errors import LlmrecError
from llmrec.prompts import (
    PromptRenderer,
    Template,
    domain_words,
    load_template,
    shipped_templates,
)
from llmrec.samples import SPLITS, SampleBuilder, SampleOptions, build_samples

MANIFEST = "manifest.json"
CATALOG = "catalog.parquet"
INTERACTIONS = "interactions.parquet"
SFT = "sft"
NEGATIVE_RULE = (
    "yes_no: every held-out target is a sample labelled by its rating (liked -> Yes, disliked -> "
    "No); each liked target adds negatives_per_positive items drawn uniformly from items the user "
    "never interacted with, labelled No. rank: the target plus rank_candidates-1 such unseen items, "
    "shuffled. explain: liked targets that share a genre or tag with a shown history item."
)


@dataclass
class PrepareOptions:
    """Everything ``prepare`` needs; the CLI fills it from flags.

    Attributes:
        out: The output folder (replaced whole, only with ``overwrite``).
        data: A data set name (``ml-latest-small``, ``ml-100k``) or a path.
        format: Force a loader instead of detecting it.
        columns: Generic loader: role to column mapping.
        items: Generic loader: a separate items table.
        model: Model whose tokenizer renders and counts prompts (default: embedded SmolLM2).
        prompts: A folder of template files overriding the shipped ones, by task name.
        item_noun: What items are called in prompts; default from the data ("movie", "artist").
        clean: Cleaning options.
        samples: Sample options.
        overwrite: Replace an existing non-empty ``out``.
        progress: Show progress bars.
    """

    out: Path
    data: str = datasets_io.EMBEDDED
    format: str | None = None
    columns: dict[str, str] | None = None
    items: str | None = None
    model: str | None = None
    prompts: Path | None = None
    item_noun: str | None = None
    clean: CleanOptions = field(default_factory=CleanOptions)
    samples: SampleOptions = field(default_factory=SampleOptions)
    overwrite: bool = False
    progress: bool = True


def load_templates(folder: Path | None, tasks: tuple[str, ...]) -> dict[str, Template]:
    """The shipped templates, with ``folder/TASK.yaml`` taking precedence where present."""
    templates = shipped_templates()
    if folder is not None:
        if not folder.is_dir():
            raise LlmrecError(f"{folder}: --prompts must be a folder of TASK.yaml files")
        for task in tasks:
            if (folder / f"{task}.yaml").is_file():
                templates[task] = load_template(folder / f"{task}.yaml")
    for task in tasks:
        if templates[task].task != task:
            raise LlmrecError(f"{templates[task].source}: is a {templates[task].task} template, not {task}")
    return {t: templates[t] for t in tasks}


def table_hash(df: pd.DataFrame, columns: list[str]) -> str:
    """SHA-256 of the listed columns' values, row by row: stable across Parquet writers."""
    digest = hashlib.sha256()
    for row in df[columns].astype("string").fillna("").itertuples(index=False):
        digest.update(("\t".join(row) + "\n").encode("utf-8"))
    return digest.hexdigest()


def _write_sft(records: dict[str, list[dict[str, Any]]], path: Path) -> None:
    from datasets import (
        Dataset,
        DatasetDict,
        Features,
        Sequence,
        Value,
        disable_progress_bars,
    )

    disable_progress_bars()  # one bar per split and task would bury the summary

    features = Features(
        {
            "prompt": Value("string"),
            "completion": Value("string"),
            "task": Value("string"),
            "split": Value("string"),
            "user_id": Value("string"),
            "item_id": Value("string"),
            "history": Sequence(Value("string")),
            "label": Value("int32"),
            "candidates": Sequence(Value("string")),
        }
    )
    # from_dict, not from_list: an empty split must keep its columns
    splits = {
        s: Dataset.from_dict({k: [r[k] for r in records[s]] for k in features}, features=features) for s in SPLITS
    }
    # One shard each: datasets would write an empty split with no shard and then fail to load it.
    DatasetDict(splits).save_to_disk(str(path), num_shards={s: 1 for s in SPLITS})


def prepare(options: PrepareOptions) -> dict[str, Any]:
    """Load, clean, split and render one data set into ``options.out``; returns the manifest."""
    started = time.perf_counter()
    out = Path(options.out)
    check_writable(out, options.overwrite)
    templates = load_templates(options.prompts, options.samples.tasks)
    raw = datasets_io.load(options.data, options.format, options.columns, options.items)
    has_timestamps = raw.has_timestamps
    catalog, interactions, dropped = clean(raw, options.clean)
    interactions, rule = leave_one_out(interactions, raw.ordered)

    from llmrec.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(options.model)
    renderer = PromptRenderer(tokenizer, options.samples.max_length)
    words = domain_words(options.item_noun or raw.item_noun)
    builder = SampleBuilder(catalog, templates, renderer, words, options.samples)
    records = build_samples(catalog, interactions, builder, progress=options.progress)

    counts = interactions["split"].value_counts()
    per_user = interactions.groupby("user_id")["split"].agg(lambda s: "test" in set(s))
    yes_no = [r["label"] for s in SPLITS for r in records.get("yes_no", {}).get(s, [])]
    manifest: dict[str, Any] = {
        "llmrec_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"data": raw.source, "format": raw.format, "files": raw.files, "notes": raw.notes},
        "users": int(interactions["user_id"].nunique()),
        "items": len(catalog),
        "interacted_items": int(interactions["item_id"].nunique()),
        "interactions": len(interactions),
        "splits": {s: int(counts.get(s, 0)) for s in SPLITS},
        "users_with_test": int(per_user.sum()),
        "train_only_users": int((~per_user).sum()),
        "has_timestamps": has_timestamps,
        "time_order": "timestamp" if has_timestamps else ("file order" if raw.ordered else "none (hashed order)"),
        "split_rule": rule,
        "liked_fraction": round(float(interactions["liked"].mean()), 4),
        "cleaning": {**asdict(options.clean), **dropped},
        "item_noun": words["noun"],
        "templates": {t: tpl.identity() for t, tpl in templates.items()},
        "tokenizer": {
            "model": options.model or "smollm2-135m-instruct",
            "resolved": resolve_model(options.model) if options.model else "embedded",
            "chat_template": bool(getattr(tokenizer, "chat_template", None)),
            "end_of_answer": renderer.end_of_answer,
        },
        "samples": {
            **{k: v for k, v in asdict(options.samples).items() if k != "tasks"},
            "tasks": list(options.samples.tasks),
            "rule": NEGATIVE_RULE,
            "counts": {t: {s: len(records[t][s]) for s in SPLITS} for t in records},
            "skipped_over_budget_or_unexplainable": builder.skipped,
            "yes_no_labels": {"yes": sum(yes_no), "no": len(yes_no) - sum(yes_no)} if yes_no else {},
        },
        "hashes": {
            "catalog": table_hash(catalog, ["item_id", "title"]),
            "interactions": table_hash(interactions, ["user_id", "item_id", "timestamp", "rating", "split"]),
        },
    }
    with atomic_dir(out, options.overwrite) as tmp:
        catalog.to_parquet(tmp / CATALOG, index=False)
        keep = [c for c in ("user_id", "item_id", "timestamp", "rating", "weight", "review") if c in interactions]
        interactions[keep + ["liked", "seq", "split"]].to_parquet(tmp / INTERACTIONS, index=False)
        for task, by_split in records.items():
            _write_sft(by_split, tmp / SFT / task)
        manifest["files"] = sha256_tree(tmp)
        manifest["seconds"] = round(time.perf_counter() - started, 1)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest

