"""RecBole atomic files: tab-separated ``NAME.inter`` and ``NAME.item`` with ``name:type`` headers.

This is the field's interchange format (RecBole, UniSRec and LLMRank read it). ``token_seq``
fields are space-separated, so a genre list reads as ``Action Comedy``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from llmrec.data.tables import (
    RawData,
    make_interactions,
    read_delimited,
    require_columns,
    require_values,
    split_list,
    to_float,
    to_timestamp,
    to_year,
)
from llmrec.errors import DataError

# RecBole field names seen in its published atomic datasets, by role, in order of preference.
_TITLE = ("title", "movie_title", "item_name", "name", "artist_name", "book_title", "product_title")
_YEAR = ("release_year", "year")
_GENRES = ("genres", "genre", "class", "categories", "category")
_DESCRIPTION = ("description", "desc")
_TAGS = ("tags", "tag")
_REVIEW = ("review", "review_text", "text")


def _read_atomic(path: Path) -> pd.DataFrame:
    """Read one atomic file and strip the ``:type`` suffix from its header."""
    df = read_delimited(path, "\t", quoting=csv.QUOTE_NONE)
    names = []
    for column in df.columns:
        name, sep, kind = str(column).partition(":")
        if not sep or not kind:
            raise DataError(f"{path}: header field {column!r} is not of the form name:type")
        names.append(name)
    df.columns = names
    return df


def _first(df: pd.DataFrame, candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in df.columns), None)


def find_inter(path: Path) -> Path:
    """The ``.inter`` file of an atomic dataset given its folder or the file itself."""
    if path.is_file():
        return path
    inters = sorted(path.glob("*.inter"))
    # a benchmark layout has NAME.inter beside NAME.train/valid/test.inter: the whole is NAME.inter
    whole = [p for p in inters if "." not in p.stem]
    if len(inters) > 1 and len(whole) == 1 and all(p.name.startswith(whole[0].stem + ".") for p in inters):
        return whole[0]
    if len(inters) != 1:
        raise DataError(f"{path}: expected exactly one .inter file, found {len(inters)}")
    return inters[0]


def load(path: Path) -> RawData:
    """Read an atomic dataset from its folder or its ``.inter`` file (``.item`` beside it is optional)."""
    inter_path = find_inter(path)
    inter = _read_atomic(inter_path)
    require_columns(inter, ["user_id", "item_id"], inter_path)
    review = _first(inter, _REVIEW)
    interactions = make_interactions(
        require_values(inter, "user_id", inter_path, 2),
        require_values(inter, "item_id", inter_path, 2),
        timestamp=to_timestamp(inter, "timestamp", inter_path, 2) if "timestamp" in inter else None,
        rating=to_float(inter, "rating", inter_path, 2) if "rating" in inter else None,
        review=inter[review] if review else None,
    )
    files = [str(inter_path)]
    notes: list[str] = []
    item_path = inter_path.with_suffix(".item")
    if item_path.is_file():
        items = _read_atomic(item_path)
        require_columns(items, ["item_id"], item_path)
        title = _first(items, _TITLE)
        if title is None:
            raise DataError(f"{item_path}: no title field (looked for {', '.join(_TITLE)})")
        catalog = pd.DataFrame(
            {
                "item_id": require_values(items, "item_id", item_path, 2).to_numpy(),
                "title": require_values(items, title, item_path, 2).to_numpy(),
            }
        )
        if (year := _first(items, _YEAR)) is not None:
            catalog["year"] = to_year(items[year]).to_numpy()
        if (genres := _first(items, _GENRES)) is not None:
            catalog["genres"] = split_list(items[genres], " ").to_numpy()
        if (tags := _first(items, _TAGS)) is not None:
            catalog["tags"] = split_list(items[tags], " ").to_numpy()
        if (description := _first(items, _DESCRIPTION)) is not None:
            catalog["description"] = items[description].to_numpy()
        files.append(str(item_path))
    else:
        ids = pd.unique(interactions["item_id"])
        catalog = pd.DataFrame({"item_id": ids, "title": ids})
        notes.append(f"no {item_path.name}: item ids stand in for titles")
    return RawData(catalog, interactions, str(path), "recbole", "item", files, notes)
