"""Amazon review dumps in their exact 2014, 2018 and 2023 layouts (fixtures written here)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from llmrec import data
from llmrec.errors import DataError

REVIEWS_2014 = [
    {"reviewerID": "A1", "asin": "B001", "reviewerName": "Ann", "helpful": [0, 0], "reviewText": "Great pan.",
     "overall": 5.0, "summary": "Great", "unixReviewTime": 1390000000, "reviewTime": "01 17, 2014"},
    {"reviewerID": "A1", "asin": "B002", "reviewText": "Too small.", "overall": 2.0, "unixReviewTime": 1390000100},
    {"reviewerID": "A2", "asin": "B001", "reviewText": "Fine.", "overall": 4.0, "unixReviewTime": 1390000200},
    {"reviewerID": "A2", "asin": "B999", "reviewText": "No metadata.", "overall": 4.0, "unixReviewTime": 1390000300},
]  # fmt: skip
# the 2014 meta files are Python literals (single quotes), not JSON
META_2014 = [
    "{'asin': 'B001', 'title': 'Cast Iron Pan', 'price': 19.99, 'categories': [['Home & Kitchen', 'Cookware', 'Pans']],"
    " 'description': 'A heavy pan.'}",
    "{'asin': 'B002', 'title': 'Tiny Whisk', 'categories': [['Home & Kitchen', 'Utensils']], 'salesRank': {'Kitchen': 5}}",
    "{'asin': 'B003', 'title': 'Never Reviewed'}",
]
REVIEWS_2023 = [
    {"rating": 5.0, "title": "Love it", "text": "Works well", "images": [], "asin": "B0V1", "parent_asin": "P1",
     "user_id": "U1", "timestamp": 1588687728923, "helpful_vote": 2, "verified_purchase": True},
    {"rating": 1.0, "title": "Broke", "text": "Broke in a day", "asin": "B0V2", "parent_asin": "P1",
     "user_id": "U2", "timestamp": 1588687729000},
    {"rating": 4.0, "title": "Ok", "text": "Ok", "asin": "B0W1", "parent_asin": "P2", "user_id": "U2",
     "timestamp": 1600000000000},
]  # fmt: skip
META_2023 = [
    {"main_category": "All Beauty", "title": "Hair Clip", "average_rating": 4.1, "features": [],
     "description": ["A clip.", "Two colours."], "categories": [], "parent_asin": "P1"},
    {"main_category": "All Beauty", "title": "Comb", "description": [], "categories": ["Tools", "Combs"],
     "parent_asin": "P2"},
]  # fmt: skip


def write_lines(path: Path, lines: list[str], gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def amazon_2014(tmp_path: Path) -> Path:
    folder = tmp_path / "kitchen"
    write_lines(folder / "reviews_Home_and_Kitchen_5.json.gz", [json.dumps(r) for r in REVIEWS_2014], gz=True)
    write_lines(folder / "meta_Home_and_Kitchen.json.gz", META_2014, gz=True)
    return folder


def test_2014_layout_with_python_literal_meta(amazon_2014: Path):
    raw = data.load(amazon_2014)
    assert raw.format == "amazon" and raw.item_noun == "product"
    inter = raw.interactions
    assert len(inter) == 4 and inter["timestamp"].tolist()[:2] == [1390000000, 1390000100]
    assert inter["rating"].tolist() == [5.0, 2.0, 4.0, 4.0] and inter["review"].iloc[0] == "Great pan."
    catalog = raw.catalog.set_index("item_id")
    assert sorted(catalog.index) == ["B001", "B002"]  # reviewed items only; B999 has no metadata
    assert catalog.loc["B001", "title"] == "Cast Iron Pan" and catalog.loc["B001", "description"] == "A heavy pan."
    assert catalog.loc["B001", "genres"] == ["Home & Kitchen", "Cookware", "Pans"]
    assert any("no metadata" in n for n in raw.notes)


def test_2018_layout(tmp_path: Path):
    folder = tmp_path / "beauty18"
    reviews = [{**r, "verified": True} for r in REVIEWS_2014]
    write_lines(folder / "All_Beauty.json", [json.dumps(r) for r in reviews], gz=False)
    meta = [{"asin": "B001", "title": "Pan", "category": ["Kitchen", "Pans"], "description": ["Heavy.", "Black."]},
            {"asin": "B002", "title": "Whisk", "category": [], "description": []}]  # fmt: skip
    write_lines(folder / "meta_All_Beauty.json", [json.dumps(m) for m in meta], gz=False)
    raw = data.load(folder)
    catalog = raw.catalog.set_index("item_id")
    assert catalog.loc["B001", "genres"] == ["Kitchen", "Pans"] and catalog.loc["B001", "description"] == "Heavy. Black."
    assert len(raw.interactions) == 4


def test_2023_layout_parent_asin_and_milliseconds(tmp_path: Path):
    folder = tmp_path / "beauty23"
    write_lines(folder / "All_Beauty.jsonl", [json.dumps(r) for r in REVIEWS_2023], gz=False)
    write_lines(folder / "meta_All_Beauty.jsonl.gz", [json.dumps(m) for m in META_2023], gz=True)
    raw = data.load(folder)
    inter = raw.interactions
    assert inter["item_id"].tolist() == ["P1", "P1", "P2"]  # the product, not its variants
    assert inter["timestamp"].tolist() == [1588687728, 1588687729, 1600000000]  # ms -> s
    assert inter["user_id"].tolist() == ["U1", "U2", "U2"] and inter["review"].iloc[1] == "Broke in a day"
    catalog = raw.catalog.set_index("item_id")
    assert catalog.loc["P1", "title"] == "Hair Clip" and catalog.loc["P1", "description"] == "A clip. Two colours."
    assert catalog.loc["P1", "genres"] == ["All Beauty"] and catalog.loc["P2", "genres"] == ["All Beauty", "Tools", "Combs"]


def test_a_broken_line_names_file_and_line(tmp_path: Path):
    folder = tmp_path / "bad"
    write_lines(folder / "All_Beauty.jsonl", [json.dumps(REVIEWS_2023[0]), "{not json"], gz=False)
    write_lines(folder / "meta_All_Beauty.jsonl", [json.dumps(m) for m in META_2023], gz=False)
    with pytest.raises(DataError, match=r"All_Beauty.jsonl: line 2: neither JSON nor a Python literal"):
        data.load(folder)


def test_prepare_reads_the_folder(amazon_2014: Path, tmp_path: Path):
    from llmrec.cli import main
    from llmrec.data import prepared

    out = tmp_path / "p"
    assert main(["prepare", "--data", str(amazon_2014), "--out", str(out), "--no-progress"]) == 0
    catalog, inter, manifest = prepared.read_tables(out)
    assert manifest["source"]["format"] == "amazon" and len(inter) == 3  # the B999 review is dropped
    assert set(inter["review"]) == {"Great pan.", "Too small.", "Fine."}
