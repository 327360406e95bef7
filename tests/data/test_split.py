"""Leave-one-out splits: time order, ties, short users, and no peeking at the answer."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.data.split import MIN_SPLIT_LENGTH, leave_one_out


def _frame(rows: list[tuple[str, str, int | None, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    df["timestamp"] = df["timestamp"].astype("Int64")
    df["order"] = range(len(df))
    return df


events = st.lists(
    st.tuples(st.sampled_from("abcd"), st.integers(0, 30).map(str), st.integers(0, 5), st.sampled_from([1.0, 3.0, 5.0])),
    min_size=1,
    max_size=60,
    unique_by=lambda e: (e[0], e[1]),
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_test_is_latest_and_short_users_train_only(rows):
    df, _ = leave_one_out(_frame(rows))
    for _, g in df.groupby("user_id"):
        if len(g) < MIN_SPLIT_LENGTH:
            assert set(g["split"]) == {"train"}
            continue
        assert g["split"].value_counts().to_dict() == {"train": len(g) - 2, "valid": 1, "test": 1}
        test_ts = g.loc[g["split"] == "test", "timestamp"].item()
        valid_ts = g.loc[g["split"] == "valid", "timestamp"].item()
        assert test_ts >= g["timestamp"].max() and valid_ts >= g.loc[g["split"] == "train", "timestamp"].max()
        assert g["seq"].tolist() == list(range(len(g)))


@settings(max_examples=100, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_ties_ignore_file_order_and_ratings(rows, rnd):
    """The held-out events do not depend on how ties sit in the file, nor on the ratings."""
    base, _ = leave_one_out(_frame(rows))
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    shuffled = [(u, i, t, rnd.choice([1.0, 5.0])) for u, i, t, _ in shuffled]
    other, _ = leave_one_out(_frame(shuffled))
    key = ["user_id", "item_id", "split"]
    assert base[key].sort_values(key).values.tolist() == other[key].sort_values(key).values.tolist()


def test_unordered_data_is_split_in_hashed_order():
    rows = [("u", str(i), None, 1.0) for i in range(1, 40)]
    df, rule = leave_one_out(_frame(rows), ordered=False)
    assert "pseudo-random" in rule
    again, _ = leave_one_out(_frame(list(reversed(rows))), ordered=False)
    assert df["split"].tolist() == again["split"].tolist() and df["item_id"].tolist() == again["item_id"].tolist()
    assert df.loc[df["split"] == "test", "item_id"].item() != "39"  # not the largest id, as file order would give


def test_file_order_without_timestamps():
    df, rule = leave_one_out(_frame([("u", "1", None, 1.0), ("u", "9", None, 1.0), ("u", "5", None, 1.0)]))
    assert "file order" in rule
    assert df.set_index("item_id")["split"].to_dict() == {"1": "train", "9": "valid", "5": "test"}
