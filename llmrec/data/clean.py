"""Cleaning: readable unique titles, one row per (user, item), optional k-core, liked vs disliked."""

from __future__ import annotations

import html
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from llmrec.data.tables import LIST_ATTRIBUTES, RawData
from llmrec.errors import DataError, shorten
from llmrec.options import option


@dataclass
class CleanOptions:
    """How raw data is cleaned before splitting. Data without ratings is all liked; the two
    k-cores are applied together until both hold."""

    # 4.0 suits 5-star scales: MovieLens users give 3 to what they merely tolerate
    like_threshold: float = option(4.0, "a rating >= this is liked, below it disliked")
    min_user_interactions: int = option(0, "user k-core: drop users with fewer events (0 = off)")
    min_item_interactions: int = option(0, "item k-core: drop items with fewer events (0 = off)")
    # Longer values are data errors, not titles: a 50 MB "title" once ran prepare for 9 minutes.
    max_title_chars: int = option(1000, "longest title (and genre or tag) accepted, in characters")
    max_text_chars: int = option(20000, "longest free text (review, description) accepted, in characters")

    def __post_init__(self) -> None:
        if self.min_user_interactions < 0 or self.min_item_interactions < 0:
            raise DataError("k-core minimums must be >= 0")
        if not math.isfinite(self.like_threshold):
            raise DataError(f"--like-threshold must be a finite number, got {self.like_threshold}")
        if self.max_title_chars < 1 or self.max_text_chars < 1:
            raise DataError("--max-title-chars and --max-text-chars must be >= 1")


# Chat-control markup a tokenizer may turn into special tokens: <|im_end|>, <|eot_id|>, <s>,
# </s>, <filename>, [INST], <<SYS>>. In data it is text, so its brackets are swapped for
# look-alikes that no tokenizer treats as special (a title then reads "Evil‹|im_end|›").
_MARKUP = re.compile(r"<\|[^<>\n]{0,64}?\|>|</?[A-Za-z_][A-Za-z0-9_]{0,31}>|\[/?INST\]|<</?SYS>>")
_LOOKALIKE = str.maketrans({"<": "‹", ">": "›", "[": "⟦", "]": "⟧"})


def neutralize_markup(text: str, specials: tuple[str, ...] = ()) -> str:
    """``text`` with chat-control markup (and any of ``specials``, a tokenizer's special tokens)
    made plain: their brackets become look-alike characters, so they tokenize as ordinary text."""
    return markup_pattern(specials).sub(_plain, text) if _may_hold_markup(text, specials) else text


def _may_hold_markup(text: str, specials: tuple[str, ...]) -> bool:
    return "<" in text or "[" in text or any(s in text for s in specials if s[:1] not in "<[")


@lru_cache(maxsize=16)
def markup_pattern(specials: tuple[str, ...] = ()) -> re.Pattern:
    """The markup pattern plus ``specials`` (longest first), compiled once per tokenizer."""
    extra = "".join(f"|{re.escape(s)}" for s in sorted(specials, key=len, reverse=True) if s)
    return re.compile(_MARKUP.pattern + extra)


def _plain(match: re.Match) -> str:
    special = match.group(0)
    neutral = special.translate(_LOOKALIKE)
    # a special token without brackets is split by word joiners instead (no tokenizer merges across them)
    return neutral if neutral != special else "\u2060".join(special)


def _visible(text: str) -> bool:
    """Whether ``text`` shows anything: not only white space and zero-width or control characters."""
    return any(unicodedata.category(ch)[0] not in "ZC" for ch in text)


def clean_text(values: pd.Series) -> pd.Series:
    """Free text (reviews, descriptions): chat markup neutralised, nulls kept."""
    return values.map(lambda v: neutralize_markup(v) if isinstance(v, str) else v)


def clean_titles(titles: pd.Series) -> pd.Series:
    """Unescape HTML entities (``&amp;`` -> ``&``), collapse runs of white space, neutralise chat markup."""
    return titles.map(lambda t: neutralize_markup(" ".join(html.unescape(str(t)).split())))


def unique_titles(catalog: pd.DataFrame, source: str = "catalogue") -> pd.Series:
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
        clash = titles.duplicated(keep=False)
        ids = ", ".join(f"'{i}'" for i in catalog.loc[clash, "item_id"].head(2))
        raise DataError(f"{source}: items {ids}: the title {shorten(titles[titles.duplicated()].iloc[0])!r} "
                        "stays ambiguous after adding years and ids; rename one")  # fmt: skip
    return titles


def check_sizes(raw: RawData, options: CleanOptions) -> None:
    """Refuse titles, list attributes and free text longer than the options allow, naming the item."""
    catalog = raw.catalog
    items = "item '" + catalog["item_id"].astype(str).str.slice(0, 40) + "'"
    limits = [("title", options.max_title_chars, items, catalog["title"].astype(str).str.len())]
    for attr in LIST_ATTRIBUTES:
        if attr in catalog:
            longest = catalog[attr].map(lambda v: max((len(str(x)) for x in v), default=0))
            limits.append((attr, options.max_title_chars, items, longest))
    if "description" in catalog:
        limits.append(("description", options.max_text_chars, items,
                       catalog["description"].astype("string").str.len().fillna(0)))  # fmt: skip
    inter = raw.interactions
    if "review" in inter:
        ids = "interaction " + (inter.index.to_series() + 1).astype(str)
        limits.append(("review", options.max_text_chars, ids, inter["review"].astype("string").str.len().fillna(0)))
    for field, limit, ids, lengths in limits:
        over = (lengths > limit).to_numpy()
        if over.any():
            i = int(over.nonzero()[0][0])
            flag = "--max-title-chars" if limit == options.max_title_chars else "--max-text-chars"
            raise DataError(f"{raw.source}: {ids.iloc[i]}: {field} has {int(lengths.iloc[i]):,} "
                            f"characters, over the limit of {limit:,} ({flag})")  # fmt: skip


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
    check_sizes(raw, options)
    catalog = raw.catalog.copy()
    catalog["item_id"] = catalog["item_id"].astype(str)
    catalog["title"] = clean_titles(catalog["title"])
    if (empty := ~catalog["title"].map(_visible)).any():
        item = catalog.loc[empty, "item_id"].iloc[0]
        raise DataError(f"{raw.source}: item '{shorten(item)}': the title is empty once HTML entities and "
                        "white space are resolved")  # fmt: skip
    for attr in LIST_ATTRIBUTES:
        if attr not in catalog:
            catalog[attr] = [[] for _ in range(len(catalog))]
        catalog[attr] = catalog[attr].map(lambda values: [neutralize_markup(str(v)) for v in values])
    if "description" in catalog:
        catalog["description"] = clean_text(catalog["description"])
    dropped_items = int(catalog["item_id"].duplicated().sum())
    catalog = catalog.drop_duplicates("item_id", keep="first").reset_index(drop=True)

    inter = raw.interactions.copy()
    if "review" in inter:
        inter["review"] = clean_text(inter["review"])
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
    catalog["title"] = unique_titles(catalog, raw.source)

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
