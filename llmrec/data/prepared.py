"""The prepared-folder format, owned here: its file names, readers, writers and content hashes.

A folder written by ``llmrec prepare`` holds::

    manifest.json          counts, split rule, options, template identities, hashes (MANIFEST)
    catalog.parquet        item_id, title, year, genres, tags, other attributes (CATALOG)
    interactions.parquet   user_id, item_id, timestamp, rating, liked, seq, split, ... (INTERACTIONS)
    sft/TASK/              a datasets.DatasetDict (train/valid/test) per task (SFT)
    tokenized/KEY/         training rows tokenized by ``llmrec train`` (a cache, TOKENIZED)

Every other module reads and writes these through the functions below; none of them knows a file
name. Raw data can also stand in for a prepared folder (:func:`in_memory`): it is cleaned and
split with the default options, which is what the shipped adapter was trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.errors import LlmrecError

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "manifest.json"
CATALOG = "catalog.parquet"
INTERACTIONS = "interactions.parquet"
SFT = "sft"
TOKENIZED = "tokenized"
SPLITS = ("train", "valid", "test")
# what interactions.parquet keeps, in this order, when the data has it
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "weight", "review", "liked", "seq", "split")
SFT_COLUMNS = ("prompt", "completion", "task", "split", "user_id", "item_id", "history", "label", "candidates")


def is_prepared(path: str | Path | None) -> bool:
    """Whether ``path`` is a folder written by ``llmrec prepare``."""
    return path is not None and (Path(path) / MANIFEST).is_file()


def manifest_path(folder: str | Path) -> Path:
    """The manifest file of a prepared folder (its SHA-256 identifies the data a run used)."""
    return Path(folder) / MANIFEST


def tokenized_path(folder: str | Path, key: str) -> Path:
    """Where ``llmrec train`` caches the tokenized rows of a run keyed ``key`` (may not exist)."""
    return Path(folder) / TOKENIZED / key


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a prepared folder; a one-line error if it is not one."""
    path = manifest_path(folder)
    if not path.is_file():
        raise LlmrecError(f"{folder}: not a prepared data folder (no {MANIFEST}); run `llmrec prepare --out {folder}`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LlmrecError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None


def read_tables(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Catalogue, interactions and manifest of a prepared folder."""
    import pandas as pd

    manifest = read_manifest(folder)
    return pd.read_parquet(Path(folder) / CATALOG), pd.read_parquet(Path(folder) / INTERACTIONS), manifest


def load_sft(folder: str | Path, task: str, split: str | None = None):
    """The samples of ``task``: a ``DatasetDict`` (train/valid/test), or one split of it."""
    from datasets import load_from_disk

    path = Path(folder) / SFT / task
    if not path.is_dir():
        raise LlmrecError(f"{folder}: has no {SFT}/{task}; prepare it with --tasks including {task}")
    data = load_from_disk(str(path))
    return data if split is None else data[split]


def table_hash(df: pd.DataFrame, columns: list[str]) -> str:
    """SHA-256 of the listed columns' values, row by row: stable across Parquet writers."""
    digest = hashlib.sha256()
    for row in df[columns].astype("string").fillna("").itertuples(index=False):
        digest.update(("\t".join(row) + "\n").encode("utf-8"))
    return digest.hexdigest()


def content_hashes(catalog: pd.DataFrame, interactions: pd.DataFrame) -> dict[str, str]:
    """The hashes that say whether two runs saw the same catalogue and the same split."""
    return {
        "catalog": table_hash(catalog, ["item_id", "title"]),
        "interactions": table_hash(interactions, ["user_id", "item_id", "timestamp", "rating", "split"]),
    }


def write_tables(folder: Path, catalog: pd.DataFrame, interactions: pd.DataFrame) -> None:
    """Write catalog.parquet and interactions.parquet into ``folder``."""
    catalog.to_parquet(folder / CATALOG, index=False)
    interactions[[c for c in INTERACTION_COLUMNS if c in interactions]].to_parquet(folder / INTERACTIONS, index=False)


def write_sft(folder: Path, task: str, records: dict[str, list[dict[str, Any]]]) -> None:
    """Write one task's samples (split -> records) as ``sft/TASK``."""
    import pyarrow as pa
    from datasets import (
        Dataset,
        DatasetDict,
        DatasetInfo,
        Features,
        Sequence,
        Value,
        disable_progress_bars,
    )
    from datasets.table import InMemoryTable

    disable_progress_bars()  # one bar per split and task would bury the summary
    types = {"history": Sequence(Value("string")), "candidates": Sequence(Value("string")), "label": Value("int32")}
    features = Features({c: types.get(c, Value("string")) for c in SFT_COLUMNS})

    def table(rows: list[dict[str, Any]]) -> Dataset:
        # straight to Arrow with the schema (3x faster than Dataset.from_dict); an empty split keeps its columns
        columns = pa.Table.from_pydict({k: [r[k] for r in rows] for k in features}, schema=features.arrow_schema)
        return Dataset(InMemoryTable(columns), info=DatasetInfo(features=features))

    splits = {s: table(records[s]) for s in SPLITS}
    # One shard each: datasets would write an empty split with no shard and then fail to load it.
    DatasetDict(splits).save_to_disk(str(folder / SFT / task), num_shards={s: 1 for s in SPLITS})


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json (last: its presence marks a complete folder)."""
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def in_memory(data: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Raw data cleaned and split with the default options, as a prepared folder would hold it.

    Returns the catalogue, the interactions and the part of a manifest a reader needs
    (``item_noun``, ``hashes``, ``source``); sample settings are absent, so readers use
    ``SampleOptions``' defaults, the ones ``prepare`` would have used.
    """
    from llmrec import data as loaders
    from llmrec.data.clean import CleanOptions, clean
    from llmrec.data.split import leave_one_out

    raw = loaders.load(str(data))
    catalog, interactions, _ = clean(raw, CleanOptions())
    interactions, _ = leave_one_out(interactions, raw.ordered)
    # the catalogue hash only: it is what an adapter is checked against (the interactions hash
    # would cost a pass over every row)
    info = {"item_noun": raw.item_noun, "hashes": {"catalog": table_hash(catalog, ["item_id", "title"])},
            "source": {"data": raw.source}}  # fmt: skip
    return catalog, interactions, info


def load(data: str | Path | None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Catalogue, interactions and manifest of a prepared folder, or of raw data (:func:`in_memory`);
    ``None`` is the embedded ml-latest-small."""
    from llmrec import data as loaders

    data = data if data is not None else loaders.EMBEDDED
    return read_tables(data) if is_prepared(data) else in_memory(data)


def sequences(interactions: pd.DataFrame, position: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per user: item positions in order with their split."""
    df = interactions.sort_values(["user_id", "seq"])
    out = {}
    for user, g in df.groupby(df["user_id"].astype(str), sort=False):
        out[user] = {"items": [position[str(i)] for i in g["item_id"]], "split": g["split"].tolist()}
    return out


def history_and_target(seq: dict[str, Any], split: str) -> tuple[list[int], int] | None:
    if split not in seq["split"]:
        return None
    at = seq["split"].index(split)
    return seq["items"][:at], seq["items"][at]
