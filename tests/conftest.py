"""Shared fixtures: the real SmolLM2 tokenizer and tiny data files in every supported format."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No hub is reachable here or in CI: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's real tokenizer (the model is converted from GGUF once per cache)."""
    from llmrec.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's copy of the public data sets (../shared/data beside the checkout)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not there")
    return SHARED


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write a fixture file (creating its folder) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


@pytest.fixture
def tiny_movielens(tmp_path: Path) -> Path:
    """A MovieLens CSV folder: 3 users, 5 movies, a tie, an HTML entity and a duplicate title."""
    folder = tmp_path / "ml"
    write(
        folder / "movies.csv",
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children\n"
        '2,"Matrix, The (1999)",Action|Sci-Fi\n'
        "3,Emma,Comedy|Drama\n"
        "4,Emma,Romance\n"
        "5,Tom &amp; Jerry (1992),Animation|(no genres listed)\n",
    )
    write(
        folder / "ratings.csv",
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,100\n1,2,5.0,200\n1,3,2.0,300\n1,5,3.5,300\n"
        "2,2,1.0,50\n2,1,4.5,60\n2,4,4.0,70\n2,5,5.0,80\n"
        "3,1,3.0,10\n3,2,4.0,20\n",
    )
    write(folder / "tags.csv", "userId,movieId,tag,timestamp\n1,1,Pixar,5\n2,1,pixar,6\n1,2,cyberpunk,7\n")
    return folder
