"""Cleaning: titles, duplicates, k-core, liked vs disliked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llmrec import data
from llmrec.data.clean import CleanOptions, clean, k_core, unique_titles


def test_titles_are_unescaped_and_made_unique(tiny_movielens: Path):
    catalog, _, _ = clean(data.load(tiny_movielens), CleanOptions())
    titles = dict(zip(catalog["item_id"], catalog["title"]))
    assert titles["5"] == "Tom & Jerry (1992)"
    assert titles["3"] == "Emma [id 3]" and titles["4"] == "Emma [id 4]"  # no year to tell them apart
    assert catalog["title"].is_unique


def test_duplicate_titles_get_their_year_first():
    catalog = pd.DataFrame(
        {"item_id": ["1", "2", "3"], "title": ["Heat", "Heat", "Heat (1995)"], "year": pd.array([1986, 1995, 1995], "Int64")}
    )
    titles = unique_titles(catalog).tolist()
    assert titles[0] == "Heat (1986)"
    assert len(set(titles)) == 3 and all(t.startswith("Heat") for t in titles)


def test_duplicate_user_item_keeps_the_latest(tiny_movielens: Path):
    raw = data.load(tiny_movielens)
    extra = raw.interactions.iloc[[0]].assign(rating=1.0, timestamp=pd.array([999], "Int64"))
    raw.interactions = pd.concat([extra, raw.interactions], ignore_index=True)  # earlier in file, later in time
    _, inter, stats = clean(raw, CleanOptions())
    kept = inter[(inter.user_id == "1") & (inter.item_id == "1")]
    assert len(kept) == 1 and kept["rating"].item() == 1.0 and stats["duplicate_user_item_dropped"] == 1


def test_liked_threshold_and_unrated_data(tiny_movielens: Path):
    _, inter, _ = clean(data.load(tiny_movielens), CleanOptions(like_threshold=4.0))
    assert inter["liked"].tolist() == (inter["rating"] >= 4.0).tolist()
    raw = data.load(tiny_movielens)
    raw.interactions["rating"] = float("nan")
    _, inter, _ = clean(raw, CleanOptions())
    assert inter["liked"].all()  # no ratings: every interaction is a positive


def test_k_core_holds_on_both_sides_after_filtering():
    inter = pd.DataFrame({"user_id": list("aaabbc"), "item_id": ["1", "2", "3", "1", "2", "1"]})
    out = k_core(inter, min_user=2, min_item=2)
    assert (out.groupby("user_id").size() >= 2).all() and (out.groupby("item_id").size() >= 2).all()
    assert set(out["user_id"]) == {"a", "b"} and set(out["item_id"]) == {"1", "2"}


def test_item_k_core_removes_items_from_the_catalogue(tiny_movielens: Path):
    catalog, inter, stats = clean(data.load(tiny_movielens), CleanOptions(min_item_interactions=2))
    assert set(catalog["item_id"]) == set(inter["item_id"]) and stats["k_core_dropped"] > 0
