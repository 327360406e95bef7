"""The two tables every loader produces, and the checked conversions loaders share.

A catalogue has one row per item: ``item_id`` (str), ``title`` (str) and optional attributes
(``genres`` and ``tags`` as lists of str, ``year`` as a nullable int, ``description`` as str).
An interactions table has one row per event: ``user_id`` (str), ``item_id`` (str) and optional
``timestamp`` (int seconds), ``rating`` (float), ``weight`` (float) and ``review`` (str).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.errors import DataError, shorten

LIST_ATTRIBUTES = ("genres", "tags")
# Unix timestamps beyond 2**53 (year ~285 million in seconds) cannot be held exactly as the
# float64 a number passes through; ms and µs timestamps stay well inside.
MAX_TIMESTAMP = 2**53


@dataclass
class RawData:
    """What a loader returns, before cleaning and splitting.

    Attributes:
        catalog: One row per item (see the module docstring).
        interactions: One row per event, in file order.
        source: The path or name it was read from.
        format: The loader that read it (``movielens-csv``, ``recbole``, ...).
        item_noun: What an item is called in prompts ("movie", "artist", "item").
        files: Every file that was read, for the manifest.
        notes: Facts the manifest should carry (e.g. what a weight means).
        ordered: Whether file order is time order (used only when there are no timestamps).
    """

    catalog: pd.DataFrame
    interactions: pd.DataFrame
    source: str
    format: str
    item_noun: str = "item"
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ordered: bool = True

    @property
    def has_timestamps(self) -> bool:
        """Whether every interaction has a timestamp (otherwise file order is the time order)."""
        ts = self.interactions.get("timestamp")
        return ts is not None and len(ts) > 0 and bool(ts.notna().all())


def line_of(index: int, first_line: int) -> int:
    """The 1-based line (or record) number of the row at ``index`` of a table."""
    return int(index) + first_line


def read_delimited(
    path: Path,
    sep: str,
    names: list[str] | None = None,
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
) -> pd.DataFrame:
    """Read a delimited text file as strings; a malformed file becomes a one-line DataError.

    Args:
        path: The file.
        sep: The field separator (a multi-character one such as ``::`` is supported).
        names: Column names for a file without a header line; None reads the header.
        encoding: The text encoding (MovieLens 100K/1M are latin-1).
        quoting: ``csv.QUOTE_NONE`` for formats that never quote (tab files with stray quotes).
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            header=None if names is not None else 0,
            names=names,
            dtype=str,
            keep_default_na=False,
            encoding=encoding,
            quoting=quoting,
            engine="python" if len(sep) > 1 else "c",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"{path}: malformed file: {detail}") from None
    if df.empty:
        raise DataError(f"{path}: no rows after the header")
    if names is not None and df.shape[1] != len(names):
        raise DataError(f"{path}: expected {len(names)} fields per line, found {df.shape[1]}")
    return df


def require_columns(df: pd.DataFrame, columns: list[str] | tuple[str, ...], path: Path | str) -> None:
    """Fail with the file and the missing column names unless every column is present."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns))
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (found: {have})")


def require_values(df: pd.DataFrame, column: str, path: Path | str, first_line: int) -> pd.Series:
    """Return ``df[column]`` stripped, failing on the first empty cell with its line number."""
    values = df[column].astype("string").str.strip()
    empty = values.isna() | (values == "")
    if empty.any():
        line = line_of(np.flatnonzero(empty.to_numpy())[0], first_line)
        raise DataError(f"{path}: line {line}: column '{column}' is empty")
    return values.astype(str)


def to_float(df: pd.DataFrame, column: str, path: Path | str, first_line: int) -> pd.Series:
    """Parse a numeric column; an empty cell is null, anything unparsable or infinite is an error."""
    raw = df[column].astype("string").str.strip()
    raw = raw.mask(raw == "")
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        i = np.flatnonzero(bad.to_numpy())[0]
        raise DataError(
            f"{path}: line {line_of(i, first_line)}: column '{column}': {shorten(raw.iloc[i])!r} is not a number"
        )
    infinite = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
    if infinite.any():
        i = np.flatnonzero(infinite)[0]
        raise DataError(f"{path}: line {line_of(i, first_line)}: column '{column}': {raw.iloc[i]!r} is not finite")
    return values.astype("float64")


def to_year(values: pd.Series) -> pd.Series:
    """An optional year attribute: numbers become nullable ints, anything else ("unknown") null."""
    return pd.to_numeric(values.astype("string").str.strip(), errors="coerce").round().astype("Int64")


def to_timestamp(df: pd.DataFrame, column: str, path: Path | str, first_line: int) -> pd.Series:
    """Parse unix seconds or ISO-8601 date-times (one format per column) into nullable int64 seconds."""
    raw = df[column].astype("string").str.strip()
    raw = raw.mask(raw == "")
    numeric = pd.to_numeric(raw, errors="coerce")
    is_number = numeric.notna().to_numpy()
    if not (numeric.isna() & raw.notna()).any():
        out_of_range = ~(numeric.abs() <= MAX_TIMESTAMP).to_numpy() & is_number
        if out_of_range.any():
            i = np.flatnonzero(out_of_range)[0]
            raise DataError(f"{path}: line {line_of(i, first_line)}: column '{column}': {shorten(raw.iloc[i])!r} "
                            f"is out of range for a unix timestamp (|t| <= 2**53)")  # fmt: skip
        return numeric.round().astype("Int64")
    parsed = pd.to_datetime(raw.mask(is_number), errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna() & raw.notna() & ~is_number
    if bad.any():
        i = np.flatnonzero(bad.to_numpy())[0]
        raise DataError(
            f"{path}: line {line_of(i, first_line)}: column '{column}': {shorten(raw.iloc[i])!r} "
            "is neither unix seconds nor an ISO-8601 date"
        )
    if is_number.any():
        i, j = np.flatnonzero(is_number)[0], np.flatnonzero(parsed.notna().to_numpy())[0]
        raise DataError(f"{path}: column '{column}' mixes unix seconds (line {line_of(i, first_line)}) and "
                        f"ISO-8601 dates (line {line_of(j, first_line)}); use one format")  # fmt: skip
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.astype("Int64")


def split_list(values: pd.Series, sep: str, drop: tuple[str, ...] = ()) -> pd.Series:
    """Split a delimited text column into lists of stripped, non-empty, de-duplicated strings."""

    def one(text: object) -> list[str]:
        if not isinstance(text, str):
            return []
        parts = (p.strip() for p in text.split(sep))
        return list(dict.fromkeys(p for p in parts if p and p not in drop))

    return values.map(one)


def empty_lists(n: int) -> pd.Series:
    """A column of ``n`` empty lists (for items without a list attribute)."""
    return pd.Series([[] for _ in range(n)], dtype=object)


def make_interactions(
    users: pd.Series,
    items: pd.Series,
    timestamp: pd.Series | None = None,
    rating: pd.Series | None = None,
    weight: pd.Series | None = None,
    review: pd.Series | None = None,
) -> pd.DataFrame:
    """Assemble an interactions table with the canonical column names and dtypes."""
    df = pd.DataFrame(
        {
            "user_id": users.astype(str).to_numpy(),
            "item_id": items.astype(str).to_numpy(),
            "timestamp": (
                timestamp.to_numpy() if timestamp is not None else pd.array([pd.NA] * len(users), dtype="Int64")
            ),
            "rating": rating.to_numpy() if rating is not None else np.full(len(users), np.nan),
        }
    )
    df["timestamp"] = df["timestamp"].astype("Int64")
    if weight is not None:
        df["weight"] = weight.to_numpy()
    if review is not None:
        df["review"] = review.astype("string").to_numpy()
    return df


def tags_by_item(item_ids: pd.Series, tags: pd.Series, max_tags: int = 5) -> dict[str, list[str]]:
    """The ``max_tags`` most frequent lower-cased tags of each item (ties: alphabetical)."""
    frame = pd.DataFrame({"item_id": item_ids.astype(str), "tag": tags.astype(str).str.strip().str.lower()})
    frame = frame[frame["tag"] != ""]
    counts = frame.groupby(["item_id", "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item_id", "n", "tag"], ascending=[True, False, True])
    top = counts.groupby("item_id").head(max_tags)
    return top.groupby("item_id")["tag"].agg(list).to_dict()
