"""MovieLens in its three file layouts: the CSV releases, 100K (``u.data``) and 1M (``::``)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from llmrec.data.tables import (
    RawData,
    empty_lists,
    make_interactions,
    read_delimited,
    require_columns,
    require_values,
    split_list,
    tags_by_item,
    to_float,
    to_timestamp,
)

_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_GENRES_100K = [
    "unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip


def year_of(titles: pd.Series) -> pd.Series:
    """The release year MovieLens appends to titles, "(1995)", as a nullable int."""
    return titles.str.extract(_YEAR, expand=False).astype("Int64")


def load_csv(folder: Path) -> RawData:
    """ml-latest-small, ml-latest, ml-20m/25m/32m: ``ratings.csv`` + ``movies.csv`` (+ ``tags.csv``)."""
    ratings_path, movies_path, tags_path = folder / "ratings.csv", folder / "movies.csv", folder / "tags.csv"
    ratings = read_delimited(ratings_path, ",")
    require_columns(ratings, ["userId", "movieId", "rating", "timestamp"], ratings_path)
    movies = read_delimited(movies_path, ",")
    require_columns(movies, ["movieId", "title", "genres"], movies_path)

    catalog = pd.DataFrame(
        {
            "item_id": require_values(movies, "movieId", movies_path, 2).to_numpy(),
            "title": require_values(movies, "title", movies_path, 2).to_numpy(),
        }
    )
    catalog["year"] = year_of(catalog["title"])
    catalog["genres"] = split_list(movies["genres"], "|", drop=("(no genres listed)",)).to_numpy()
    files = [str(ratings_path), str(movies_path)]
    tags: dict[str, list[str]] = {}
    if tags_path.is_file():
        tag_rows = read_delimited(tags_path, ",")
        require_columns(tag_rows, ["movieId", "tag"], tags_path)
        tags = tags_by_item(tag_rows["movieId"], tag_rows["tag"])
        files.append(str(tags_path))
    catalog["tags"] = catalog["item_id"].map(lambda i: tags.get(i, []))

    interactions = make_interactions(
        require_values(ratings, "userId", ratings_path, 2),
        require_values(ratings, "movieId", ratings_path, 2),
        timestamp=to_timestamp(ratings, "timestamp", ratings_path, 2),
        rating=to_float(ratings, "rating", ratings_path, 2),
    )
    return RawData(catalog, interactions, str(folder), "movielens-csv", "movie", files)


def load_100k(folder: Path) -> RawData:
    """MovieLens 100K: tab-separated ``u.data`` and pipe-separated, latin-1 ``u.item``."""
    data_path, item_path = folder / "u.data", folder / "u.item"
    ratings = read_delimited(data_path, "\t", names=["user", "item", "rating", "timestamp"])
    items = read_delimited(
        item_path, "|", names=["item", "title", "release", "video", "url", *_GENRES_100K], encoding="latin-1"
    )
    flags = items[_GENRES_100K].eq("1")
    catalog = pd.DataFrame(
        {
            "item_id": require_values(items, "item", item_path, 1).to_numpy(),
            "title": require_values(items, "title", item_path, 1).to_numpy(),
        }
    )
    catalog["year"] = year_of(catalog["title"])
    catalog["genres"] = [[g for g in _GENRES_100K if row[g] and g != "unknown"] for _, row in flags.iterrows()]
    catalog["tags"] = empty_lists(len(catalog))
    interactions = make_interactions(
        require_values(ratings, "user", data_path, 1),
        require_values(ratings, "item", data_path, 1),
        timestamp=to_timestamp(ratings, "timestamp", data_path, 1),
        rating=to_float(ratings, "rating", data_path, 1),
    )
    return RawData(catalog, interactions, str(folder), "movielens-100k", "movie", [str(data_path), str(item_path)])


def load_1m(folder: Path) -> RawData:
    """MovieLens 1M/10M: ``ratings.dat`` and ``movies.dat`` separated by ``::``."""
    ratings_path, movies_path = folder / "ratings.dat", folder / "movies.dat"
    ratings = read_delimited(ratings_path, "::", names=["user", "item", "rating", "timestamp"], encoding="latin-1")
    movies = read_delimited(movies_path, "::", names=["item", "title", "genres"], encoding="latin-1")
    catalog = pd.DataFrame(
        {
            "item_id": require_values(movies, "item", movies_path, 1).to_numpy(),
            "title": require_values(movies, "title", movies_path, 1).to_numpy(),
        }
    )
    catalog["year"] = year_of(catalog["title"])
    catalog["genres"] = split_list(movies["genres"], "|", drop=("(no genres listed)",)).to_numpy()
    catalog["tags"] = empty_lists(len(catalog))
    interactions = make_interactions(
        require_values(ratings, "user", ratings_path, 1),
        require_values(ratings, "item", ratings_path, 1),
        timestamp=to_timestamp(ratings, "timestamp", ratings_path, 1),
        rating=to_float(ratings, "rating", ratings_path, 1),
    )
    return RawData(catalog, interactions, str(folder), "movielens-1m", "movie", [str(ratings_path), str(movies_path)])
