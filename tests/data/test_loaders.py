"""Loaders on the real files and on tiny fixtures of every format."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from support import write

from llmrec import data
from llmrec.errors import DataError


def test_embedded_ml_latest_small_loads_in_full():
    raw = data.load("ml-latest-small")
    assert raw.format == "movielens-csv"
    assert len(raw.interactions) == 100_004
    assert raw.interactions["user_id"].nunique() == 671
    assert len(raw.catalog) == 9_125
    assert raw.has_timestamps
    toy = raw.catalog.set_index("item_id").loc["1"]
    assert toy["title"] == "Toy Story (1995)" and toy["year"] == 1995
    assert "Animation" in toy["genres"]
    assert (data.embedded_path() / "README.txt").is_file()  # the licence ships with the data


def test_lastfm_hetrec_files(tiny_lastfm: Path):
    raw = data.load(tiny_lastfm)
    assert raw.format == "lastfm-hetrec" and raw.item_noun == "artist"
    assert len(raw.interactions) == 60 * 12
    assert raw.interactions["user_id"].nunique() == 60
    assert len(raw.catalog) == 40
    assert not raw.has_timestamps and not raw.ordered
    assert raw.interactions["rating"].isna().all() and (raw.interactions["weight"] > 0).all()
    tags = raw.catalog.set_index("item_id")["tags"]
    assert list(tags["1"]) == ["metal"] and list(tags["2"]) == ["jazz"] and list(tags["3"]) == []


def test_recbole_ml_100k_from_the_wheel():
    pytest.importorskip("recbole.dataset_example", reason="recbole wheel not installed")
    raw = data.load("ml-100k")
    assert raw.format == "recbole"
    assert len(raw.interactions) == 100_000 and raw.interactions["user_id"].nunique() == 943
    assert len(raw.catalog) == 1_682
    toy = raw.catalog.set_index("item_id").loc["1"]
    assert toy["title"] == "Toy Story" and toy["year"] == 1995 and "Comedy" in toy["genres"]


def test_movielens_csv_fixture(tiny_movielens: Path):
    raw = data.load(tiny_movielens)
    assert len(raw.interactions) == 10 and len(raw.catalog) == 5
    cat = raw.catalog.set_index("item_id")
    assert cat.loc["2", "title"] == "Matrix, The (1999)"  # quoted comma survives
    assert cat.loc["5", "genres"] == ["Animation"]  # "(no genres listed)" is not a genre
    assert cat.loc["1", "tags"] == ["pixar"]  # tags lower-cased and merged across users
    assert raw.interactions["timestamp"].dtype == "Int64"


def test_movielens_100k_fixture(tmp_path: Path):
    flags = "|".join(["0"] * 19)
    write(tmp_path / "u.data", "1\t10\t4\t881250949\n2\t10\t2\t881250950\n")
    genres = "0|0|0|0|0|1|" + "|".join(["0"] * 13)  # index 5 = Comedy
    write(tmp_path / "u.item", f"10|Caf\xe9 Society (1995)|01-Jan-1995||http://x|{genres}\n11|Other (1990)|||u|{flags}\n",
          encoding="latin-1")  # fmt: skip
    raw = data.load(tmp_path)
    assert raw.format == "movielens-100k"
    cat = raw.catalog.set_index("item_id")
    assert cat.loc["10", "title"] == "Café Society (1995)" and cat.loc["10", "genres"] == ["Comedy"]
    assert raw.interactions["rating"].tolist() == [4.0, 2.0]


def test_movielens_1m_fixture(tmp_path: Path):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(tmp_path / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James (1996)::Animation|Musical\n")
    raw = data.load(tmp_path)
    assert raw.format == "movielens-1m"
    assert raw.catalog.set_index("item_id").loc["661", "genres"] == ["Animation", "Musical"]
    assert raw.interactions["timestamp"].tolist() == [978300760, 978302109]


def test_lastfm_fixture(tmp_path: Path):
    write(tmp_path / "user_artists.dat", "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n")
    write(tmp_path / "artists.dat", 'id\tname\turl\tpictureURL\n51\tDuran "Duran"\tu\tp\n52\tMorcheeba\tu\tp\n')
    raw = data.load(tmp_path)
    assert raw.catalog["title"].tolist() == ['Duran "Duran"', "Morcheeba"]  # quotes are not CSV quoting
    assert raw.interactions["weight"].tolist() == [13883.0, 11690.0]


def test_recbole_fixture_with_and_without_item_file(tmp_path: Path):
    inter = write(
        tmp_path / "toy" / "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t5\t10\nu1\ti2\t3\t20\n",
    )
    raw = data.load(inter.parent)
    assert raw.catalog["title"].tolist() == ["i1", "i2"] and raw.notes  # ids stand in for titles
    write(inter.with_suffix(".item"), "item_id:token\tmovie_title:token_seq\tclass:token_seq\ni1\tA Film\tDrama War\ni2\tB Film\tComedy\n")
    raw = data.load(inter)
    assert raw.catalog.set_index("item_id").loc["i1", "genres"] == ["Drama", "War"]
    assert raw.catalog["title"].tolist() == ["A Film", "B Film"]


def test_generic_csv_with_column_mapping_and_iso_times(tmp_path: Path):
    path = write(
        tmp_path / "log.csv",
        "customer,sku,when,stars,product\nc1,s1,2024-01-01T00:00:00Z,5,Red Shoe\nc1,s2,2024-01-02T00:00:00Z,2,Blue Hat\n",
    )
    columns = {"user": "customer", "item": "sku", "timestamp": "when", "rating": "stars", "title": "product"}
    raw = data.load(path, columns=columns)
    assert raw.interactions["timestamp"].tolist() == [1704067200, 1704153600]
    assert dict(zip(raw.catalog["item_id"], raw.catalog["title"])) == {"s1": "Red Shoe", "s2": "Blue Hat"}


def test_generic_jsonl_and_parquet_with_items_table(tmp_path: Path):
    rows = [{"user": 1, "item": 7, "timestamp": 5}, {"user": 1, "item": 8, "timestamp": 6}]
    jsonl = write(tmp_path / "inter.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    items = tmp_path / "items.parquet"
    pd.DataFrame({"item": ["7", "8"], "title": ["Seven", "Eight"], "genres": [["a", "b"], ["b"]]}).to_parquet(items)
    raw = data.load(jsonl, items=items)
    assert raw.interactions["user_id"].tolist() == ["1", "1"]  # JSON numbers become string ids
    assert raw.catalog.set_index("item_id").loc["7", "genres"] == ["a", "b"]
    parquet = tmp_path / "inter.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    assert data.load(parquet, items=items).interactions["item_id"].tolist() == ["7", "8"]


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("ratings.csv", "", "file is empty"),
        ("ratings.csv", "userId,movieId,rating\n1,2,3\n", "missing column(s) timestamp"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,100\n1,1,five,100\n", "line 3: column 'rating': 'five'"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,100\n,1,4,100\n", "line 3: column 'userId' is empty"),
        ("ratings.csv", 'userId,movieId,rating,timestamp\n1,1,4,100\n1,"2,4,100\n', "malformed file"),
    ],
)
def test_bad_movielens_files_name_file_line_and_column(tmp_path: Path, name: str, text: str, expected: str):
    write(tmp_path / "movies.csv", "movieId,title,genres\n1,A (1990),Drama\n")
    write(tmp_path / name, text)
    with pytest.raises(DataError) as err:
        data.load(tmp_path)
    assert str(tmp_path) in str(err.value) and expected in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_paths_and_formats(tmp_path: Path):
    with pytest.raises(DataError, match="no such file or folder"):
        data.load(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown format"):
        data.load(tmp_path)  # an empty folder
    with pytest.raises(DataError, match="unknown format '.xlsx'"):
        data.load(write(tmp_path / "x.xlsx", "a"))
    with pytest.raises(DataError, match=r"line 2: not valid JSON"):
        data.load(write(tmp_path / "x.jsonl", '{"user": 1, "item": 2}\n{oops\n'))
    with pytest.raises(DataError, match="not of the form name:type"):
        data.load(write(tmp_path / "r" / "r.inter", "user_id\titem_id\n1\t2\n"))
    with pytest.raises(DataError, match="unknown column role"):
        data.load(write(tmp_path / "y.csv", "u,i\n1,2\n"), columns={"usr": "u"})
