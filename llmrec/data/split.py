"""Chronological leave-one-out: per user, the last event is test, the one before valid, the rest train;
and the per-item counts of the train split that the guide's fusion and the yes/no prompt read."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

MIN_SPLIT_LENGTH = 3  # one train event at least, so a valid/test prompt has a history to show

RULE_WITH_TIME = (
    "chronological leave-one-out per user: events sorted by timestamp; events with equal "
    "timestamps are ordered by a fixed hash of (user_id, item_id), which is deterministic and "
    "independent of ratings and of which event is held out; last event -> test, second-to-last "
    "-> valid, the rest -> train; users with fewer than 3 events -> train only"
)
RULE_FILE_ORDER = (
    "leave-one-out per user in file order (the data has no timestamps): last event in the file "
    "-> test, second-to-last -> valid, the rest -> train; users with fewer than 3 events -> train only"
)
RULE_UNORDERED = (
    "leave-one-out per user in a fixed pseudo-random order (the data has no timestamps and its file "
    "order is not time order): events ordered by a fixed hash of (user_id, item_id); last -> test, "
    "second-to-last -> valid, the rest -> train; users with fewer than 3 events -> train only"
)


def tie_break_key(users: pd.Series, items: pd.Series) -> np.ndarray:
    """A fixed pseudo-random order for events that share a timestamp.

    Sorting ties by item id (MovieLens files are sorted that way) would always hold out the
    largest id; a hash of the pair spreads ties without looking at ratings or the answer.
    """
    return pd.util.hash_pandas_object(pd.DataFrame({"u": users, "i": items}), index=False).to_numpy()


def leave_one_out(interactions: pd.DataFrame, ordered: bool = True) -> tuple[pd.DataFrame, str]:
    """Order each user's events in time and label them ``train``/``valid``/``test``.

    Args:
        interactions: Cleaned events with ``user_id``, ``item_id``, ``timestamp`` (all null when
            the data has none) and ``order`` (file order).
        ordered: Whether file order is time order when there are no timestamps. When it is not
            (Last.fm's files are sorted by artist id, so file order would always hold out each
            user's largest artist id), events are ordered by the tie-break hash instead.

    Returns:
        The events sorted by user then time, with ``seq`` (0-based position in the user's
        sequence) and ``split``; and the rule that was applied, for the manifest.
    """
    df = interactions.copy()
    timed = bool(df["timestamp"].notna().all())
    if timed:
        df["_tie"] = tie_break_key(df["user_id"], df["item_id"])
        df = df.sort_values(["user_id", "timestamp", "_tie"], kind="stable").drop(columns="_tie")
        rule = RULE_WITH_TIME
    elif ordered:
        df = df.sort_values(["user_id", "order"], kind="stable")
        rule = RULE_FILE_ORDER
    else:
        df["_tie"] = tie_break_key(df["user_id"], df["item_id"])
        df = df.sort_values(["user_id", "_tie"], kind="stable").drop(columns="_tie")
        rule = RULE_UNORDERED
    groups = df.groupby("user_id", sort=False)
    df["seq"] = groups.cumcount()
    from_end = groups.cumcount(ascending=False)
    long_enough = groups["item_id"].transform("size") >= MIN_SPLIT_LENGTH
    split = np.where(long_enough & (from_end == 0), "test", np.where(long_enough & (from_end == 1), "valid", "train"))
    df["split"] = split
    return df.reset_index(drop=True), rule


def item_statistics(interactions, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Per item of ``item_ids``: its interactions in the train split and how many were liked."""
    train = interactions[interactions["split"] == "train"]
    position = {str(i): n for n, i in enumerate(item_ids)}
    at = train["item_id"].astype(str).map(position)
    known = at.notna().to_numpy()
    at = at[known].astype(np.int64).to_numpy()
    liked = train["liked"].to_numpy()[known].astype(np.float64)
    return {"count": np.bincount(at, minlength=len(item_ids)).astype(np.float64),
            "liked": np.bincount(at, weights=liked, minlength=len(item_ids))}  # fmt: skip
