"""A prepared folder as RecBole atomic files, so other libraries run on exactly llmrec's split.

``NAME.inter`` holds every event (user, then sequence order); ``NAME.train.inter``,
``NAME.valid.inter`` and ``NAME.test.inter`` hold the split, for RecBole's
``benchmark_filename: [train, valid, test]``; ``NAME.item`` the catalogue (``title:token_seq``;
a genre's inner spaces become ``_`` so that the space-separated list splits back into genres).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from llmrec.data import prepared
from llmrec.errors import LlmrecError
from llmrec.files import atomic_dir

SPLITS = ("train", "valid", "test")


def _inter_table(interactions: pd.DataFrame) -> pd.DataFrame:
    df = interactions.sort_values(["user_id", "seq"], kind="stable")
    out = pd.DataFrame({"user_id:token": df["user_id"].astype(str), "item_id:token": df["item_id"].astype(str)})
    if df["rating"].notna().any():
        out["rating:float"] = df["rating"]
    if df["timestamp"].notna().all():
        out["timestamp:float"] = df["timestamp"].astype("int64")
    return out


def _item_table(catalog: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"item_id:token": catalog["item_id"].astype(str), "title:token_seq": catalog["title"]})
    for column in ("genres", "tags"):
        if column in catalog and catalog[column].map(len).any():
            out[f"{column}:token_seq"] = catalog[column].map(lambda values: " ".join(re.sub(r"\s+", "_", v) for v in values))
    if "year" in catalog and catalog["year"].notna().any():
        out["year:token"] = catalog["year"].astype("string").fillna("")
    return out


def to_recbole(folder: Path, out: Path, name: str | None = None, overwrite: bool = False) -> dict[str, int]:
    """Write ``folder``'s catalogue and split as atomic files into ``out``; returns rows per file."""
    catalog, interactions, manifest = prepared.read_tables(folder)
    name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", Path(manifest["source"]["data"]).name).strip("-") or "llmrec"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise LlmrecError(f"--name {name!r}: letters, digits, '-' and '_' only (RecBole reads it as a file name)")
    tables = {f"{name}.inter": _inter_table(interactions), f"{name}.item": _item_table(catalog)}
    for split in SPLITS:
        tables[f"{name}.{split}.inter"] = _inter_table(interactions[interactions["split"] == split])
    with atomic_dir(Path(out), overwrite) as tmp:
        for file, table in tables.items():
            table.to_csv(tmp / file, sep="\t", index=False, lineterminator="\n")
    return {file: len(table) for file, table in tables.items()}
