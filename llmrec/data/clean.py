"""Cleaning: readable unique titles, one row per (user, item), optional k-core, liked vs disliked."""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from llmrec.data.tables import LIST_ATTRIBUTES, RawData
from llmrec.errors import DataError
from llmrec.options import option


@dataclass
class CleanOptions:
    """How raw data is cleaned before splitting. Data without ratings is all liked; the two
    k-cores are applied together until both hold."""

    # 4.0 suits 5-star scales: MovieLens users give 3 to what they merely tolerate
    like_threshold: float = option(4.0, "a rating >= this is liked, below it disliked")
    min_user_interactions: int = option(0, "user k-core: drop users with fewer events (0 = off)")
    min_item_interactions: int = option(0, "item k-core: drop items with fewer events (0 = off)")

    def __post_init__(self) -> None:
        if self.min_user_interactions < 0 or self.min_item_interactions < 0:
            raise DataError("k-core minimums must be >= 0")


def clean_titles(titles: pd.Series) -> pd.Series:
    """Unescape HTML entities (``&amp;`` -> ``&``) and collapse runs of white space."""
    return titles.map(lambda t: " ".join(html.unescape(str(t)).split()))


def unique_titles(catalog: pd.DataFrame) -> pd.Series:
    """Make every title name exactly one item.

    A title shared by several items gets its year appended when the catalogue has one and the
    title does not already end with it; titles still shared after that get ``[id ITEM_ID]``.
    """
    titles = catalog["title"].copy()
    dup = titles.duplicated(keep=False)
    if dup.any() and "year" in catalog:
        year = catalog["year"]
        add_year = dup & year.notna()
        suffix = " (" + year.astype("string") + ")"
        already = pd.Series([str(t).endswith(str(s)) for t, s in zip(titles, suffix)], index=titles.index)
        titles = titles.mask(add_year & ~already, titles + suffix)
    dup = titles.duplicated(keep=False)
    titles = titles.mask(dup, titles + " [id " + catalog["item_id"] + "]")
    if titles.duplicated().any():  # "[id X]" could still collide with a literal title
        raise DataError(f"titles stay ambiguous after adding ids: {titles[titles.duplicated()].iloc[0]!r}")
    return titles


def k_core(interactions: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Drop users and items below the minimums, repeatedly, until both hold (or nothing is left)."""
    df = interactions
    while min_user > 0 or min_item > 0:
        keep = pd.Series(True, index=df.index)
        if min_user > 0:
            keep &= df.groupby("user_id")["item_id"].transform("size") >= min_user
        if min_item > 0:
            keep &= df.groupby("item_id")["user_id"].transform("size") >= min_item
        if keep.all():
            break
        df = df[keep]
    return df


def clean(raw: RawData, options: CleanOptions) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Return the cleaned catalogue, the cleaned interactions (in time order) and what was dropped.

    Interactions keep their file order in ``order``; duplicates of a (user, item) pair keep the
    latest (largest timestamp, then last in the file).
    """
    catalog = raw.catalog.copy()
    catalog["item_id"] = catalog["item_id"].astype(str)
    catalog["title"] = clean_titles(catalog["title"])
    for attr in LIST_ATTRIBUTES:
        if attr not in catalog:
            catalog[attr] = [[] for _ in range(len(catalog))]
    dropped_items = int(catalog["item_id"].duplicated().sum())
    catalog = catalog.drop_duplicates("item_id", keep="first").reset_index(drop=True)

    inter = raw.interactions.copy()
    inter["order"] = range(len(inter))
    known = inter["item_id"].isin(catalog["item_id"])
    unknown_item = int((~known).sum())
    inter = inter[known]
    if inter["timestamp"].notna().any() and inter["timestamp"].isna().any():
        n = int(inter["timestamp"].isna().sum())
        raise DataError(f"{raw.source}: {n} interaction(s) lack a timestamp while others have one")
    by_time = ["timestamp", "order"] if inter["timestamp"].notna().all() else ["order"]
    inter = inter.sort_values(by_time, kind="stable")
    before = len(inter)
    inter = inter.drop_duplicates(["user_id", "item_id"], keep="last")
    duplicates = before - len(inter)
    before = len(inter)
    inter = k_core(inter, options.min_user_interactions, options.min_item_interactions)
    k_core_dropped = before - len(inter)
    if inter.empty:
        raise DataError(f"{raw.source}: no interactions left after cleaning")
    if options.min_item_interactions > 0:
        catalog = catalog[catalog["item_id"].isin(inter["item_id"])].reset_index(drop=True)
    catalog["title"] = unique_titles(catalog)

    rating = inter["rating"]
    inter["liked"] = (rating >= options.like_threshold) | rating.isna()
    inter = inter.sort_values("order", kind="stable").reset_index(drop=True)
    stats = {
        "duplicate_item_rows_dropped": dropped_items,
        "unknown_item_interactions_dropped": unknown_item,
        "duplicate_user_item_dropped": duplicates,
        "k_core_dropped": k_core_dropped,
    }
    return catalog, inter, stats
