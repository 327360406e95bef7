"""Shared fixtures: the real SmolLM2 tokenizer and tiny data files in every supported format.

Nothing here reads outside the repository: real data comes from the package's embedded
ml-latest-small, everything else is written by the fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import REPO, write

if os.environ.get("LLMREC_TEST_INSTALLED") == "1":
    # `make test` runs the suite against the installed wheel: the source tree must not shadow it
    import llmrec

    if Path(llmrec.__file__).resolve().is_relative_to(REPO / "llmrec"):
        raise RuntimeError(f"llmrec was imported from the source tree ({llmrec.__file__}), not the installed wheel")

# No hub is reachable here or in CI: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's real tokenizer (the model is converted from GGUF once per cache)."""
    from llmrec.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def embedded_ml() -> Path:
    """The ml-latest-small copy shipped inside the package."""
    from llmrec import data

    return data.embedded_path()


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


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> Path:
    """A generic CSV log: 6 users over a 28-item catalogue (``i0``..``i27``, "Product number N"), plus a
    user who saw every item once."""
    rows = ["user,item,timestamp,title"]
    for u in range(6):
        for j in range(6):
            item = (u * 5 + j) % 28
            rows.append(f"u{u},i{item},{100 * u + j},Product number {item}")
    rows += [f"u9,i{i},{900 + i},Product number {i}" for i in range(28)]  # every item once
    return write(tmp_path_factory.mktemp("shop") / "log.csv", "\n".join(rows) + "\n")


@pytest.fixture(scope="session")
def ml_small(tmp_path_factory, tokenizer) -> Path:
    """ml-latest-small prepared with the default options, as the README runs it."""
    from llmrec.cli import main

    out = tmp_path_factory.mktemp("prep") / "ml"
    assert main(["prepare", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def prepared_small(tmp_path_factory, embedded_ml: Path, tokenizer) -> Path:
    """The first 30 users of the real (embedded) ml-latest-small, prepared with 2 train targets per user."""
    from llmrec.cli import main

    src = embedded_ml
    folder = tmp_path_factory.mktemp("ml30")
    lines = (src / "ratings.csv").read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if int(line.split(",")[0]) <= 30]
    write(folder / "raw" / "ratings.csv", "\n".join(keep) + "\n")
    write(folder / "raw" / "movies.csv", (src / "movies.csv").read_text())
    out = folder / "prepared"
    argv = ["prepare", "--data", str(folder / "raw"), "--out", str(out), "--train-targets-per-user", "2", "--no-progress"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="session")
def tiny_lastfm(tmp_path_factory) -> Path:
    """A Last.fm hetrec folder: 60 users x 12 artists with play counts, sorted by artist id as the
    real ``user_artists.dat`` is, plus tags."""
    import numpy as np

    folder = tmp_path_factory.mktemp("lastfm") / "lastfm"
    rng = np.random.default_rng(0)
    plays = ["userID\tartistID\tweight"]
    for user in range(2, 62):
        for artist in sorted(rng.choice(np.arange(1, 41), 12, replace=False).tolist()):
            plays.append(f"{user}\t{artist}\t{int(rng.integers(1, 5000))}")
    write(folder / "user_artists.dat", "\n".join(plays) + "\n")
    write(folder / "artists.dat", "id\tname\turl\tpictureURL\n" + "".join(
        f"{a}\tArtist {a}\thttp://example.invalid/{a}\t\n" for a in range(1, 41)))  # fmt: skip
    write(folder / "tags.dat", "tagID\ttagValue\n1\tmetal\n2\tjazz\n")
    write(folder / "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\n"
          "2\t1\t1\t1\t4\t2009\n3\t2\t2\t1\t4\t2009\n")  # fmt: skip
    return folder


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory, tokenizer) -> Path:
    """A 2-layer, hidden-16 Llama with the real SmolLM2 tokenizer and chat template, saved as a folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("toy") / "toy-llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# The toy-weights model behind the transformers backend, with the embedded catalogue indexed
# (shared by the backend and guided-decoding tests).
@pytest.fixture(scope="session")
def catalog(prepared_small: Path):
    from llmrec.data import prepared

    return prepared.read_tables(prepared_small)[0]


@pytest.fixture(scope="session")
def backend(toy_model: Path):
    from llmrec.decoding.backends.hf import HFBackend

    return HFBackend.load(str(toy_model), device="cpu")


@pytest.fixture(scope="session")
def renderer(backend):
    from llmrec.prompting.templates import PromptRenderer

    return PromptRenderer(backend.tokenizer, 512)


@pytest.fixture(scope="session")
def index(backend, catalog, renderer):
    from llmrec.decoding.index import CatalogIndex

    prefix = renderer.chat("system", "user")
    index = CatalogIndex.from_tokenizer(backend.tokenizer, catalog["item_id"], catalog["title"], prefix)
    backend.set_catalog(index)
    return index


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict:
    """A key file with one key per scope (the service's tests): {"path": ..., "read": key, ...}."""
    from llmrec.serve.keys import add_key

    path = tmp_path_factory.mktemp("keys") / "keys.json"
    out = {scope: add_key(path, [scope], name=scope) for scope in ("read", "feedback", "admin")}
    return {"path": path, **out}
