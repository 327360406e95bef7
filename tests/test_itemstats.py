"""Item statistics in yes/no prompts (template v3): train counts only, a train sample's own event out."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from llmrec.prompting.itemstats import ItemStats
from llmrec.prompting.templates import (
    PromptRenderer,
    domain_words,
    shipped_templates,
    shipped_version,
)

CATALOG = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"]})
EVENTS = pd.DataFrame({
    "user_id": ["1", "1", "2", "2", "3", "3", "3"],
    "item_id": ["a", "b", "a", "c", "a", "b", "d"],
    "liked": [True, False, True, True, False, True, True],
    "split": ["train", "train", "train", "valid", "train", "train", "test"],
})  # fmt: skip
STATS_LINE = re.compile(r'"[^"\n]*": popularity (\d+)/100, (?:liked by (\d+)% of the (\d+) other users who '
                        r"watched it|no other user has watched it)\.\nWill the user like")  # fmt: skip


def test_counts_come_from_the_train_split_only():
    stats = ItemStats.from_interactions(CATALOG, EVENTS)
    assert stats.count.tolist() == [3, 2, 0, 0]  # c (valid) and d (test) are held out: not counted
    assert stats.liked.tolist() == [2, 1, 0, 0]
    assert stats.context(0) == {"popularity": 75, "users": 3, "liked_share": 67}
    assert stats.context(2) == {"popularity": 0, "users": 0, "liked_share": None}
    assert stats.context(None) is None
    assert stats.context(9) is None  # an item added after the counts: unknown, not unpopular


def test_a_train_event_of_its_own_is_taken_out():
    stats = ItemStats.from_interactions(CATALOG, EVENTS)
    assert stats.context(0, without=True) == {"popularity": 50, "users": 2, "liked_share": 50}
    assert stats.context(1, without=False) == {"popularity": 50, "users": 1, "liked_share": 100}
    assert stats.context(1, without=True)["users"] == 1 and stats.context(1, without=True)["liked_share"] == 0


def test_the_v3_template_shows_the_stats_and_v2_does_not(tokenizer):
    v3, v2 = shipped_templates()["yes_no"], shipped_version("yes_no", 2)
    assert v3.version == 3 and v2 is not None
    renderer = PromptRenderer(tokenizer, 512)

    def prompt(template, stats):
        context = {**domain_words("movie"), "liked": ["Heat (1995)"], "disliked": [], "target": "Casino (1995)",
                   "target_stats": stats, "liked_target": True}  # fmt: skip
        return renderer.fit(template, [], lambda _: context, "Yes")[0]

    shown = prompt(v3, {"popularity": 87, "users": 44, "liked_share": 25})
    assert '"Casino (1995)": popularity 87/100, liked by 25% of the 44 other users who watched it.\n' in shown
    assert "no other user has watched it." in prompt(v3, {"popularity": 0, "users": 0, "liked_share": None})
    assert "popularity" not in prompt(v3, None)  # nothing known (a free-text item): the line is left out
    assert "popularity" not in prompt(v2, {"popularity": 87, "users": 44, "liked_share": 25})


def test_prepared_yes_no_prompts_show_other_users_train_counts(prepared_small: Path):
    from llmrec.data import prepared

    catalog, inter, _ = prepared.read_tables(prepared_small)
    train = inter[inter["split"] == "train"]
    titles = dict(zip(catalog["item_id"], catalog["title"]))
    liked_counts = train[train["liked"]].groupby("item_id").size().reindex(catalog["item_id"], fill_value=0).to_numpy()
    checked = {"train": 0, "valid": 0, "test": 0}
    for split in checked:
        for r in prepared.load_sft(prepared_small, "yes_no", split):
            match = STATS_LINE.search(r["prompt"])
            assert match is not None, r["prompt"]
            assert f'"{titles[r["item_id"]]}": popularity' in r["prompt"]
            others = train[(train["item_id"] == r["item_id"]) & (train["user_id"] != r["user_id"])]
            assert int(match.group(3) or 0) == len(others)
            # the percentile: catalogue items whose (full) liked count is below the others' likes
            below = (liked_counts < int(others["liked"].sum())).sum()
            assert int(match.group(1)) == int(100 * below / len(catalog))
            if len(others):
                assert int(match.group(2)) == round(100 * others["liked"].sum() / len(others))
            checked[split] += 1
    assert all(checked.values())


def test_the_recommender_prompts_with_the_data_s_train_counts(backend, index, prepared_small: Path):
    from llmrec.data import prepared
    from llmrec.decoding.recommender import Recommender

    catalog, inter, info = prepared.load(prepared_small)
    rec = Recommender(backend, catalog, inter, info)
    seen: list[str] = []
    real = rec.p_yes
    rec.p_yes = lambda prompts: (seen.extend(prompts), real(prompts))[1]
    train = inter[inter["split"] == "train"]
    item = train["item_id"].value_counts().index[0]  # the most taken item
    rec.predict_yes_no([catalog["item_id"].iloc[1]], item)
    match = STATS_LINE.search(seen[0])
    assert match is not None and int(match.group(3)) == (train["item_id"] == item).sum() and int(match.group(1)) >= 90
    seen.clear()
    rec.predict_yes_no([catalog["item_id"].iloc[1]], "A film nobody has heard of (2031)")
    assert "popularity" not in seen[0]  # free text: no counts to show
    seen.clear()
    try:
        rec.add_items(["new-1"], ["A film added today (2026)"])
        rec.predict_yes_no([catalog["item_id"].iloc[1]], "new-1")
    finally:
        backend.set_catalog(index)  # the session's backend goes back to the shared index
    assert "A film added today (2026)" in seen[0] and "popularity" not in seen[0]  # unknown, not unpopular


def test_a_frame_without_a_split_counts_every_event(backend, index, prepared_small: Path):
    from llmrec.data import prepared
    from llmrec.decoding.recommender import Recommender

    catalog, inter, info = prepared.load(prepared_small)
    by_hand = inter.drop(columns=["split"])  # a frame a user builds: events only, nothing held out
    item = inter.loc[inter["split"] != "train", "item_id"].value_counts().index[0]  # held out in the data
    seen: list[str] = []
    try:
        rec = Recommender(backend, catalog, by_hand, info)
        real = rec.p_yes
        rec.p_yes = lambda prompts: (seen.extend(prompts), real(prompts))[1]
        rec.predict_yes_no([catalog["item_id"].iloc[1]], item)
        no_likes = Recommender(backend, catalog, by_hand.drop(columns=["liked"]), info)
    finally:
        backend.set_catalog(index)  # the session's backend goes back to the shared index
    match = STATS_LINE.search(seen[0])
    assert match is not None and int(match.group(3)) == (inter["item_id"] == item).sum()  # every event
    assert no_likes.item_stats is None  # nothing to count likes from: no line rather than a wrong one
