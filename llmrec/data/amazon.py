"""Amazon review dumps (McAuley lab): the 2014, 2018 and 2023 layouts, plain or gzipped.

A folder holds one reviews file and one ``meta_*`` file of the same category:

- 2014: ``reviews_CAT(_5).json`` (JSON lines: ``reviewerID``, ``asin``, ``overall``,
  ``unixReviewTime``, ``reviewText``) and ``meta_CAT.json``, whose lines are Python literals, not
  JSON (``asin``, ``title``, ``categories`` as lists of lists, ``description``);
- 2018: ``CAT(_5).json`` (the same review fields) and ``meta_CAT.json`` in JSON (``asin``,
  ``title``, ``category``, ``description`` as a list);
- 2023: ``CAT.jsonl`` (``user_id``, ``parent_asin``, ``rating``, ``timestamp`` in milliseconds,
  ``text``) and ``meta_CAT.jsonl`` (``parent_asin``, ``title``, ``main_category``,
  ``categories``, ``description`` as a list).

Items are the reviewed ones (2023: ``parent_asin``, the product rather than its variant); only
their metadata is kept, so a category's multi-million-line meta file streams through. Ratings
are stars (1-5), so ``--like-threshold`` 4 applies as for MovieLens.
"""

from __future__ import annotations

import ast
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec.data.tables import RawData, make_interactions, to_float, to_timestamp
from llmrec.errors import DataError, shorten

SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
MAX_CATEGORIES = 5  # the most specific categories kept per item (the paths start at the store's root)


def _is_dump(name: str) -> bool:
    return name.endswith(SUFFIXES)


def find_files(folder: Path) -> tuple[Path, Path] | None:
    """(reviews, meta) of an Amazon folder, or None when the folder is not one."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and _is_dump(p.name))
    meta = [p for p in files if p.name.startswith("meta_")]
    reviews = [p for p in files if not p.name.startswith("meta_")]
    if len(meta) != 1 or len(reviews) != 1:
        return None
    return reviews[0], meta[0]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield number, line
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {shorten(exc)})") from None


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each line as a dict: JSON, or a Python literal (the 2014 meta files)."""
    for number, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            try:
                row = ast.literal_eval(line.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise DataError(f"{path}: line {number}: neither JSON nor a Python literal ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number}: expected an object")
        yield number, row


def _reviews(path: Path) -> pd.DataFrame:
    rows, year_2023 = [], None
    for number, row in _records(path):
        if year_2023 is None:
            year_2023 = "parent_asin" in row or "user_id" in row
        user = row.get("user_id") if year_2023 else row.get("reviewerID")
        item = (row.get("parent_asin") or row.get("asin")) if year_2023 else row.get("asin")
        if not user or not item:
            field = ("user_id", "parent_asin") if year_2023 else ("reviewerID", "asin")
            raise DataError(f"{path}: line {number}: field '{field[0] if not user else field[1]}' is missing")
        stamp = row.get("timestamp") if year_2023 else row.get("unixReviewTime")
        if year_2023 and isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            stamp = int(stamp) // 1000  # 2023 timestamps are milliseconds
        rows.append({"user": str(user), "item": str(item), "timestamp": stamp, "line": number,
                     "rating": row.get("rating") if year_2023 else row.get("overall"),
                     "review": row.get("text") if year_2023 else row.get("reviewText")})  # fmt: skip
    if not rows:
        raise DataError(f"{path}: no reviews")
    return pd.DataFrame(rows)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value if v)
    return "" if value is None else str(value)


def _categories(row: dict[str, Any]) -> list[str]:
    raw = row.get("categories") or row.get("category") or []
    flat: list[str] = []
    for entry in raw if isinstance(raw, list) else [raw]:
        flat.extend(entry if isinstance(entry, list) else [entry])  # 2014: a list of category paths
    if row.get("main_category"):
        flat.insert(0, row["main_category"])
    names = list(dict.fromkeys(str(c).strip() for c in flat if str(c).strip()))
    return names[-MAX_CATEGORIES:]


def _meta(path: Path, wanted: set[str]) -> pd.DataFrame:
    rows = {}
    for number, row in _records(path):
        item = str(row.get("parent_asin") or row.get("asin") or "")
        if not item:
            raise DataError(f"{path}: line {number}: field 'asin' (or 'parent_asin') is missing")
        if item not in wanted:
            continue
        title = _text(row.get("title")).strip()
        rows[item] = {"item_id": item, "title": title or item, "genres": _categories(row),
                      "description": _text(row.get("description"))}  # fmt: skip
    return pd.DataFrame(list(rows.values()), columns=["item_id", "title", "genres", "description"])


def load(folder: Path) -> RawData:
    """Read an Amazon reviews folder (see the module docstring)."""
    found = find_files(folder)
    if found is None:
        raise DataError(f"{folder}: expected one reviews file and one meta_*.json(l)(.gz) file")
    reviews_path, meta_path = found
    reviews = _reviews(reviews_path)
    frame = reviews.astype({"timestamp": "string", "rating": "string"})
    interactions = make_interactions(
        reviews["user"], reviews["item"],
        timestamp=to_timestamp(frame, "timestamp", reviews_path, 1) if reviews["timestamp"].notna().any() else None,
        rating=to_float(frame, "rating", reviews_path, 1) if reviews["rating"].notna().any() else None,
        review=reviews["review"].astype("string"),
    )  # fmt: skip
    catalog = _meta(meta_path, set(reviews["item"]))
    notes = ["Amazon reviews: one review is one interaction; ratings are 1-5 stars"]
    missing = len(set(reviews["item"]) - set(catalog["item_id"]))
    if missing:
        notes.append(f"{missing} reviewed item(s) have no metadata: their reviews are dropped")
    files = [str(reviews_path), str(meta_path)]
    return RawData(catalog, interactions, str(folder), "amazon", "product", files, notes)
