"""``llmrec prepare``: raw logs in, a folder of clean tables, SFT datasets and a manifest out."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmrec import __version__
from llmrec import data as datasets_io
from llmrec.data import prepared
from llmrec.data.clean import CleanOptions, clean
from llmrec.data.split import leave_one_out
from llmrec.errors import LlmrecError
from llmrec.files import atomic_dir, check_writable, sha256_tree
from llmrec.options import option, parse_mapping
from llmrec.prompting.building import build_samples
from llmrec.prompting.evidence import cooccurrence
from llmrec.prompting.itemstats import ItemStats
from llmrec.prompting.samples import SPLITS, SampleBuilder, SampleOptions
from llmrec.prompting.templates import (
    PromptRenderer,
    Template,
    domain_words,
    load_template,
    shipped_templates,
)

NEGATIVE_RULE = (
    "yes_no: every held-out target is a sample labelled by its rating (liked -> Yes, disliked -> "
    "No: the hard negatives); liked targets add up to negatives_per_positive items drawn uniformly "
    "from items the user never interacted with, labelled No (with balance: only as many as make a "
    "user's Yes and No even in each split, the hard negatives counting first). rank: the target plus rank_candidates-1 such unseen items, "
    "shuffled. explain: liked targets that share a genre or tag with a shown history item; in data "
    "without genres or tags, liked targets chosen by other users who also chose a shown history "
    "item (train split co-occurrence)."
)


@dataclass
class PrepareOptions:
    """Everything ``prepare`` needs; the CLI fills it from flags."""

    out: Path = option(help="output folder (written whole or not at all)", parse=Path)
    data: str = option(datasets_io.EMBEDDED, "data set name (ml-latest-small, ml-100k) or path")
    format: str | None = option(None, "force a loader instead of detecting one", choices=datasets_io.FORMATS)
    columns: dict[str, str] | None = option(
        None, "CSV/JSONL/Parquet: ROLE=COLUMN,... e.g. user=uid,item=sku", parse=parse_mapping, metavar="MAPPING"
    )
    items: str | None = option(None, "CSV/JSONL/Parquet: a separate items table (item, title, genres, ...)")
    model: str | None = option(None, "model whose tokenizer renders prompts (default: embedded SmolLM2-135M)")
    prompts: Path | None = option(None, "folder of TASK.yaml templates overriding the shipped ones")
    item_noun: str | None = option(None, "what an item is called in prompts (default from the data: movie, artist)")
    clean: CleanOptions = field(default_factory=CleanOptions)
    samples: SampleOptions = field(default_factory=SampleOptions)
    # forked processes; the samples do not depend on it (a test checks), so it is not in the manifest
    workers: int = option(0, "processes that build samples (0 = one per CPU core)")
    overwrite: bool = option(False, "replace a non-empty --out folder")
    progress: bool = option(True, "no progress bars", flag="--no-progress")


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


def _label_shares(yes_no: dict[str, list[dict[str, Any]]], interactions) -> dict[str, dict[str, int]]:
    """Per split, the yes/no samples by kind: liked (Yes), disliked (No: a hard negative, an item
    the user rated low) and unseen (No: an item drawn from those the user never had)."""
    had = set(zip(interactions["user_id"].astype(str), interactions["item_id"].astype(str)))
    shares = {}
    for split, rows in yes_no.items():
        kinds = {"liked": 0, "disliked": 0, "unseen": 0}
        for r in rows:
            kind = "liked" if r["label"] else ("disliked" if (str(r["user_id"]), str(r["item_id"])) in had else "unseen")
            kinds[kind] += 1
        shares[split] = kinds
    return shares


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
    has_attributes = any(len(g) or len(t) for g, t in zip(catalog["genres"], catalog["tags"]))
    cooc = cooccurrence(catalog, interactions) if "explain" in options.samples.tasks and not has_attributes else None
    stats = ItemStats.from_interactions(catalog, interactions)  # train split only
    builder = SampleBuilder(catalog, templates, renderer, words, options.samples, cooc, stats)
    workers = options.workers or os.cpu_count() or 1
    loaded = time.perf_counter()
    records = build_samples(catalog, interactions, builder, progress=options.progress, workers=workers)
    built = time.perf_counter()

    counts = interactions["split"].value_counts()
    per_user = interactions.groupby("user_id")["split"].agg(lambda s: "test" in set(s))
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
            "explain_source": builder.explain_source,
            "yes_no_labels": _label_shares(records.get("yes_no", {}), interactions),
        },
        "hashes": prepared.content_hashes(catalog, interactions),
    }
    with atomic_dir(out, options.overwrite) as tmp:
        prepared.write_tables(tmp, catalog, interactions)
        for task, by_split in records.items():
            prepared.write_sft(tmp, task, by_split)
        manifest["files"] = sha256_tree(tmp)
        manifest["seconds"] = round(time.perf_counter() - started, 1)
        # where the time went: load + clean + split (+ tokenizer), samples, writing
        manifest["stages"] = {"load_clean_split": round(loaded - started, 1), "samples": round(built - loaded, 1),
                              "samples_workers": workers, "write": round(time.perf_counter() - built, 1)}  # fmt: skip
        prepared.write_manifest(tmp, manifest)
    return manifest


def prepared_folder(data: str | None, progress: bool, cache: Path | None = None) -> Path:
    """A prepared folder for ``data``: itself if it is one, else prepared once into the cache.

    The cached folder is named after the data and :func:`prepare_key`, so a change to the input
    files or to the code that prepares them prepares afresh instead of reusing a stale split.
    """
    from llmrec import data as datasets_io
    from llmrec.models import cache_dir

    name = data or datasets_io.EMBEDDED
    if prepared.is_prepared(name):
        return Path(name)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(name).resolve()) if Path(name).exists() else name).strip("_")
    folder = (cache or cache_dir() / "prepared") / f"{slug}-{prepare_key(name)}"
    if not prepared.is_prepared(folder):
        prepare(PrepareOptions(out=folder, data=name, overwrite=True, progress=progress))
    return folder


def prepare_key(name: str) -> str:
    """12 hex digits over what a default ``prepare`` of ``name`` depends on: llmrec's version, the
    source of every module of ``llmrec.data`` and ``llmrec.prompting`` (found by importing them,
    so moving a file cannot silently drop it from the key), the shipped templates, and each input
    file's path, size and modification time (``name`` may also be a packaged data set)."""
    from importlib import resources

    import llmrec
    from llmrec import data as datasets_io

    digest = hashlib.sha256(llmrec.__version__.encode())
    for module, source in code_sources(("llmrec.data", "llmrec.prompting")):
        digest.update(module.encode() + b"\0" + source)
    for template in sorted(Path(str(resources.files("llmrec.templates"))).glob("*.yaml")):
        digest.update(template.name.encode() + b"\0" + template.read_bytes())
    path = datasets_io.named_path(name) or Path(name)
    inputs = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in inputs:
        stat = p.stat()
        digest.update(f"{p.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def code_sources(packages: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """(module name, source bytes) of every module in ``packages``, sorted by name."""
    import importlib.util
    import pkgutil

    out = []
    for name in packages:
        package = importlib.import_module(name)
        out.append((name, Path(package.__file__).read_bytes()))
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            spec = importlib.util.find_spec(info.name)
            out.append((info.name, Path(spec.origin).read_bytes()))
    return sorted(out)
