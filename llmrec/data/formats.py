"""Names of the data sets and formats llmrec reads, and what identifies each layout (no pandas here)."""

from __future__ import annotations

GENERIC_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")

EMBEDDED = "ml-latest-small"
FORMATS = ("movielens-csv", "movielens-100k", "movielens-1m", "lastfm-hetrec", "recbole", "amazon", "generic")

# What identifies each folder layout: the files it must hold.
_LAYOUTS = (
    ("movielens-csv", ("ratings.csv", "movies.csv")),
    ("movielens-100k", ("u.data", "u.item")),
    ("movielens-1m", ("ratings.dat", "movies.dat")),
    ("lastfm-hetrec", ("user_artists.dat", "artists.dat")),
)
