"""Helpers the tests import (``from support import write``): on pytest's ``pythonpath`` so that
the repository root, whose ``llmrec/`` would shadow the installed wheel, never is."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write a fixture file (creating its folder) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path
