"""Reading interaction logs into a catalogue and an interactions table, whatever their format."""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from llmrec.data.formats import _LAYOUTS, EMBEDDED, FORMATS, GENERIC_SUFFIXES
from llmrec.errors import DataError

if TYPE_CHECKING:  # the loaders import pandas: kept out of `llmrec --help`
    from llmrec.data.tables import RawData

def embedded_path() -> Path:
    """The folder of the ml-latest-small copy shipped inside the package."""
    return Path(str(resources.files("llmrec.embedded") / EMBEDDED))


def named_path(name: str) -> Path | None:
    """Resolve a data set name: the embedded ml-latest-small, or ml-100k from an installed recbole."""
    if name == EMBEDDED:
        return embedded_path()
    if name == "ml-100k":
        spec = importlib.util.find_spec("recbole")  # found without importing recbole itself
        if spec is None or not spec.submodule_search_locations:
            raise DataError("ml-100k: install it with `pip install --no-deps recbole==1.2.1`, or pass a path")
        return Path(spec.submodule_search_locations[0]) / "dataset_example" / "ml-100k"
    return None


def detect_format(path: Path) -> str:
    """Name the loader for a folder or file, from the files it holds or its suffix."""
    if path.is_dir():
        for fmt, files in _LAYOUTS:
            if all((path / f).is_file() for f in files):
                return fmt
        if any(path.glob("*.inter")):
            return "recbole"
        if any(path.glob("meta_*.json*")):
            return "amazon"
        expected = "; ".join(" + ".join(files) for _, files in _LAYOUTS)
        raise DataError(f"{path}: unknown format: the folder holds none of: {expected}; or a RecBole .inter file; "
                        "or Amazon reviews + meta_*.json(l)(.gz)")  # fmt: skip
    if path.suffix == ".inter":
        return "recbole"
    if path.suffix.lower() in GENERIC_SUFFIXES:
        return "generic"
    raise DataError(f"{path}: unknown format '{path.suffix}' (a data folder, .inter, {', '.join(GENERIC_SUFFIXES)})")


def load(
    data: str | Path,
    format: str | None = None,
    columns: dict[str, str] | None = None,
    items: str | Path | None = None,
) -> RawData:
    """Load a data set by name (``ml-latest-small``, ``ml-100k``) or path.

    Args:
        data: A name or a path to a folder or an interactions file.
        format: Force a loader (one of ``FORMATS``) instead of detecting it.
        columns: For the generic loader: role to column mapping (see ``llmrec.data.generic``).
        items: For the generic loader: a separate items table.

    Raises:
        DataError: The path does not exist, the format is unknown, or a file is malformed.
    """
    path = named_path(str(data)) or Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (or a data set name: {EMBEDDED}, ml-100k)")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    from llmrec.data import amazon, generic, lastfm, movielens, recbole

    if (columns or items) and fmt != "generic":
        raise DataError(f"{path}: column mappings and --items apply to CSV/JSONL/Parquet files, not {fmt}")
    if fmt == "movielens-csv":
        raw = movielens.load_csv(path)
    elif fmt == "movielens-100k":
        raw = movielens.load_100k(path)
    elif fmt == "movielens-1m":
        raw = movielens.load_1m(path)
    elif fmt == "lastfm-hetrec":
        raw = lastfm.load(path)
    elif fmt == "recbole":
        raw = recbole.load(path)
    elif fmt == "amazon":
        raw = amazon.load(path)
    else:
        if path.is_dir():
            raise DataError(f"{path}: the generic format reads a file, not a folder")
        raw = generic.load(path, columns, Path(items) if items else None)
    if str(data) != str(path):
        raw.source = str(data)
    return raw


__all__ = ["EMBEDDED", "FORMATS", "detect_format", "embedded_path", "load"]
