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


def run_failing(argv: list[str], capsys) -> str:
    """Run the CLI expecting a user error: exit 2 and exactly one line on stderr, no traceback."""
    from llmrec.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("llmrec: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def leftovers(folder: Path) -> list[str]:
    """Temporary folders of ours left in ``folder``."""
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def with_other_test_events(folder: Path, out: Path, seed: int) -> Path:
    """A copy of a prepared folder whose test events point at random catalogue items."""
    import shutil

    import numpy as np

    from llmrec.data import prepared

    shutil.copytree(folder, out)
    catalog, interactions, _ = prepared.read_tables(out)
    test = interactions["split"] == "test"
    items = catalog["item_id"].astype(interactions["item_id"].dtype).to_numpy()
    interactions.loc[test, "item_id"] = np.random.default_rng(seed).choice(items, int(test.sum()))
    interactions.to_parquet(out / "interactions.parquet")
    return out

