"""A user's own logs: CSV, TSV, JSONL or Parquet, with a mapping from our column names to theirs.

Interaction roles: ``user``, ``item`` (required), ``timestamp``, ``rating``, ``weight``, ``review``.
Item roles (in the interactions file or a separate items file): ``item``, ``title``, ``genres``,
``tags``, ``year``, ``description``. A role maps to the column of the same name unless the mapping
says otherwise, e.g. ``{"user": "customer", "item": "sku", "title": "product_name"}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.data.formats import GENERIC_SUFFIXES as SUFFIXES
from llmrec.data.tables import (
    RawData,
    line_of,
    make_interactions,
    read_delimited,
    require_columns,
    require_values,
    split_list,
    to_float,
    to_timestamp,
    to_year,
)
from llmrec.errors import DataError, shorten

INTERACTION_ROLES = ("user", "item", "timestamp", "rating", "weight", "review")
ITEM_ROLES = ("item", "title", "genres", "tags", "year", "description")
LIST_SEPARATOR = "|"  # separates genres/tags inside one CSV cell, as MovieLens does


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {n}: expected a JSON object")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: file is empty")
    return pd.DataFrame(rows)


def read_table(path: Path) -> tuple[pd.DataFrame, int]:
    """Read a table by its suffix; returns it with the line number of its first data row."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_delimited(path, "," if suffix == ".csv" else "\t"), 2
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path), 1
    if suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
        if df.empty:
            raise DataError(f"{path}: no rows")
        return df, 1
    raise DataError(f"{path}: unknown format '{suffix}' (expected one of {', '.join(SUFFIXES)})")


def _as_text(df: pd.DataFrame, column: str, path: Path | None = None, first: int = 1) -> pd.Series:
    """A column as strings, nulls kept null (ids read from JSON/Parquet may be numbers).

    With ``path``, a value that is an object or a list (JSON/Parquet) is an error naming its
    line: it would otherwise become Python's text of it.
    """
    values = df[column]
    if path is not None:
        nested = values.map(lambda v: isinstance(v, (dict, list, tuple)) or hasattr(v, "tolist")).to_numpy()
        if nested.any():
            i = int(np.flatnonzero(nested)[0])
            raise DataError(f"{path}: line {line_of(i, first)}: column '{column}': expected text or a number, "
                            f"got {type(values.iloc[i]).__name__} {shorten(values.iloc[i])}")  # fmt: skip
    return values.where(values.isna(), values.astype(str)).astype("string")


def _list_column(values: pd.Series) -> pd.Series:
    """Lists stay lists (JSONL/Parquet); text is split on ``|``."""

    def one(v: object) -> list[str]:
        if isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
            return list(dict.fromkeys(str(x).strip() for x in list(v) if str(x).strip()))
        return split_list(pd.Series([v]), LIST_SEPARATOR).iloc[0]

    return values.map(one)


def _roles(mapping: dict[str, str], allowed: tuple[str, ...], what: str) -> dict[str, str]:
    unknown = sorted(set(mapping) - set(INTERACTION_ROLES) - set(ITEM_ROLES))
    if unknown:
        raise DataError(f"unknown {what} role(s) {', '.join(unknown)} (known: {', '.join(allowed)})")
    return {role: mapping.get(role, role) for role in allowed}


def _one_column_per_role(roles: dict[str, str]) -> None:
    """Two interaction roles read from one column make nonsense (user = item collapses every event)."""
    seen: dict[str, str] = {}
    for role, column in roles.items():
        if column in seen:
            raise DataError(f"--columns: roles '{seen[column]}' and '{role}' both read column '{column}'")
        seen[column] = role


def load(path: Path, columns: dict[str, str] | None = None, items: Path | None = None) -> RawData:
    """Read an interactions file and, optionally, an items file with its own columns.

    Args:
        path: The interactions table (.csv, .tsv, .jsonl, .parquet).
        columns: Role to column-name mapping shared by both files (see the module docstring).
        items: An items table; without one, item roles are read from the interactions file, and
            items without a title column are titled by their id.
    """
    mapping = columns or {}
    roles = _roles(mapping, INTERACTION_ROLES, "column")
    _one_column_per_role(roles)
    table, first = read_table(path)
    require_columns(table, [roles["user"], roles["item"]], path)
    for role in ("user", "item"):
        table[roles[role]] = _as_text(table, roles[role], path, first)
    present = {r: c for r, c in roles.items() if c in table.columns}
    interactions = make_interactions(
        require_values(table, roles["user"], path, first),
        require_values(table, roles["item"], path, first),
        timestamp=to_timestamp(table, present["timestamp"], path, first) if "timestamp" in present else None,
        rating=to_float(table, present["rating"], path, first) if "rating" in present else None,
        weight=to_float(table, present["weight"], path, first) if "weight" in present else None,
        review=_as_text(table, present["review"]) if "review" in present else None,
    )
    files = [str(path)]
    item_roles = _roles(mapping, ITEM_ROLES, "column")
    if items is not None:
        item_table, item_first = read_table(items)
        require_columns(item_table, [item_roles["item"], item_roles["title"]], items)
        item_table[item_roles["item"]] = _as_text(item_table, item_roles["item"], items, item_first)
        files.append(str(items))
        source, source_first, source_path = item_table, item_first, items
    else:
        source, source_first, source_path = table, first, path
    catalog = _catalog(source, item_roles, source_path, source_first)
    notes = [] if item_roles["title"] in source.columns else ["no title column: item ids stand in for titles"]
    return RawData(catalog, interactions, str(path), "generic", "item", files, notes)


def _catalog(table: pd.DataFrame, roles: dict[str, str], path: Path, first: int) -> pd.DataFrame:
    item_col = roles["item"]
    ids = require_values(table, item_col, path, first)
    title_col = roles["title"]
    if title_col in table.columns:
        table = table.assign(**{title_col: _as_text(table, title_col, path, first)})
        titles = require_values(table, title_col, path, first)
    else:
        titles = ids
    catalog = pd.DataFrame({"item_id": ids.to_numpy(), "title": titles.to_numpy()})
    for role in ("genres", "tags"):
        if roles[role] in table.columns:
            catalog[role] = _list_column(table[roles[role]]).to_numpy()
    if roles["year"] in table.columns:
        catalog["year"] = to_year(table[roles["year"]]).to_numpy()
    if roles["description"] in table.columns:
        catalog["description"] = _as_text(table, roles["description"]).to_numpy()
    # One row per item: the interactions file repeats an item on every event that names it.
    return catalog.drop_duplicates("item_id", keep="last").reset_index(drop=True)
