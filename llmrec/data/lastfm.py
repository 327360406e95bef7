"""Last.fm hetrec-2011 (lastfm-2k): user–artist play counts, no timestamps."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from llmrec.data.tables import (
    RawData,
    make_interactions,
    read_delimited,
    require_columns,
    require_values,
    tags_by_item,
    to_float,
)


def load(folder: Path) -> RawData:
    """Read ``user_artists.dat`` and ``artists.dat``; tags from ``user_taggedartists.dat``/``tags.dat``.

    The play count becomes the ``weight`` column; ratings are null, so every listened artist counts
    as liked. The files carry no listening time, and ``user_artists.dat`` is sorted by artist id,
    so its order is not time order: the data is marked unordered (split in a fixed hashed order).
    """
    plays_path, artists_path = folder / "user_artists.dat", folder / "artists.dat"
    plays = read_delimited(plays_path, "\t", quoting=csv.QUOTE_NONE)
    require_columns(plays, ["userID", "artistID", "weight"], plays_path)
    artists = read_delimited(artists_path, "\t", quoting=csv.QUOTE_NONE)
    require_columns(artists, ["id", "name"], artists_path)

    catalog = pd.DataFrame(
        {
            "item_id": require_values(artists, "id", artists_path, 2).to_numpy(),
            "title": require_values(artists, "name", artists_path, 2).to_numpy(),
        }
    )
    files = [str(plays_path), str(artists_path)]
    tagged_path, tag_names_path = folder / "user_taggedartists.dat", folder / "tags.dat"
    tags: dict[str, list[str]] = {}
    if tagged_path.is_file() and tag_names_path.is_file():
        tagged = read_delimited(tagged_path, "\t", quoting=csv.QUOTE_NONE)
        require_columns(tagged, ["artistID", "tagID"], tagged_path)
        names = read_delimited(tag_names_path, "\t", quoting=csv.QUOTE_NONE)
        require_columns(names, ["tagID", "tagValue"], tag_names_path)
        tag_text = tagged["tagID"].map(dict(zip(names["tagID"], names["tagValue"]))).fillna("")
        tags = tags_by_item(tagged["artistID"], tag_text)
        files += [str(tagged_path), str(tag_names_path)]
    catalog["tags"] = catalog["item_id"].map(lambda i: tags.get(i, []))

    interactions = make_interactions(
        require_values(plays, "userID", plays_path, 2),
        require_values(plays, "artistID", plays_path, 2),
        weight=to_float(plays, "weight", plays_path, 2),
    )
    notes = ["weight is the user's play count of the artist; there are no ratings, so every interaction is liked"]
    notes.append("no listening time and the file is sorted by artist id: events are split in a fixed hashed order")
    return RawData(catalog, interactions, str(folder), "lastfm-hetrec", "artist", files, notes, ordered=False)
