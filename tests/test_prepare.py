"""`llmrec prepare` end to end through `main(argv)`, and the leak check on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import load_from_disk
from support import write

from llmrec.cli import main
from llmrec.prompting.templates import TASKS


def assert_no_leak(folder: Path) -> None:
    """Test events are each user's latest, and no test item reaches that user's training samples."""
    inter = pd.read_parquet(folder / "interactions.parquet")
    timed = inter["timestamp"].notna().all()
    for _, g in inter.groupby("user_id"):
        held = g[g["split"] == "test"]
        if held.empty:
            continue
        rest = g[g["split"] != "test"]
        if timed:
            assert held["timestamp"].item() >= rest["timestamp"].max()
        assert held["seq"].item() == g["seq"].max()
    test_item = inter[inter["split"] == "test"].set_index("user_id")["item_id"].to_dict()
    valid_item = inter[inter["split"] == "valid"].set_index("user_id")["item_id"].to_dict()
    for task in json.loads((folder / "manifest.json").read_text())["samples"]["counts"]:
        train = load_from_disk(str(folder / "sft" / task))["train"].to_pandas()
        for row in train.itertuples():
            held = {test_item.get(row.user_id), valid_item.get(row.user_id)} - {None}
            shown = {row.item_id, *row.history, *row.candidates}
            assert not held & shown, (task, row.user_id)


def test_prepare_embedded_default_writes_everything(ml_small: Path):
    names = {p.name for p in ml_small.iterdir()}
    assert {"catalog.parquet", "interactions.parquet", "manifest.json", "sft"} <= names
    manifest = json.loads((ml_small / "manifest.json").read_text())
    assert (manifest["users"], manifest["items"], manifest["interactions"]) == (671, 9_125, 100_004)
    assert manifest["splits"]["test"] == manifest["splits"]["valid"] == manifest["users_with_test"]
    assert set(manifest["templates"]) == set(TASKS) and all(t["version"] >= 1 for t in manifest["templates"].values())
    assert manifest["time_order"] == "timestamp" and "leave-one-out" in manifest["split_rule"]
    catalog = pd.read_parquet(ml_small / "catalog.parquet")
    assert catalog["title"].is_unique and catalog["item_id"].map(type).eq(str).all()
    inter = pd.read_parquet(ml_small / "interactions.parquet")
    assert set(inter["split"]) == {"train", "valid", "test"}
    assert str(inter["timestamp"].dtype) == "Int64" and inter["rating"].dtype == "float64"
    for task in TASKS:
        sft = load_from_disk(str(ml_small / "sft" / task))
        assert set(sft) == {"train", "valid", "test"} and len(sft["test"]) > 0
        assert {"prompt", "completion"} <= set(sft["train"].column_names)
        assert all(c.endswith("<|im_end|>") for c in sft["test"]["completion"])


def test_prepare_embedded_has_no_leak(ml_small: Path):
    assert_no_leak(ml_small)


def test_yes_no_labels_match_ratings_and_sampled_negatives(ml_small: Path):
    inter = pd.read_parquet(ml_small / "interactions.parquet").set_index(["user_id", "item_id"])
    test = load_from_disk(str(ml_small / "sft" / "yes_no"))["test"].to_pandas()
    for row in test.itertuples():
        key = (row.user_id, row.item_id)
        if key in inter.index:  # the held-out event: labelled by its rating
            assert row.label == int(inter.loc[key, "liked"]) and inter.loc[key, "split"] == "test"
        else:  # a sampled negative: never interacted with
            assert row.label == 0
        assert row.completion == ("Yes" if row.label else "No") + "<|im_end|>"


def test_rank_answer_letter_points_at_the_target(ml_small: Path):
    rows = load_from_disk(str(ml_small / "sft" / "rank"))["valid"]
    for row in rows.select(range(50)):
        assert len(row["candidates"]) == 10 and row["candidates"][row["label"]] == row["item_id"]
        assert row["completion"] == "ABCDEFGHIJ"[row["label"]] + "<|im_end|>"


def test_prepare_lastfm_without_timestamps(tiny_lastfm: Path, tmp_path: Path):
    out = tmp_path / "lastfm"
    argv = ["prepare", "--data", str(tiny_lastfm), "--out", str(out), "--tasks", "next_item",
            "--train-targets-per-user", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["time_order"] == "none (hashed order)" and "pseudo-random order" in manifest["split_rule"]
    # the file is sorted by artist id: file order would hold out each user's largest id
    inter = pd.read_parquet(out / "interactions.parquet")
    largest = inter.groupby("user_id")["item_id"].transform(lambda s: s.astype(int).max()).astype(int)
    test = inter[inter["split"] == "test"]
    assert (test["item_id"].astype(int) == largest[test.index]).mean() < 0.2
    assert manifest["users"] == 60
    assert "listened to" in load_from_disk(str(out / "sft" / "next_item"))["test"][0]["prompt"]
    assert_no_leak(out)


def test_prepare_recbole_atomic_folder(tmp_path: Path):
    pytest.importorskip("recbole.dataset_example", reason="recbole wheel not installed")
    out = tmp_path / "ml100k"
    argv = ["prepare", "--data", "ml-100k", "--out", str(out), "--tasks", "yes_no", "rank",
            "--train-targets-per-user", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["format"] == "recbole" and manifest["users"] == 943
    assert_no_leak(out)


def test_generic_csv_with_a_new_domain(tmp_path: Path, tokenizer):
    rows = "\n".join(f"cust{u},sku{(u * 7 + k) % 13},{1000 + k},Product {(u * 7 + k) % 13}" for u in range(6) for k in range(5))
    path = write(tmp_path / "log.csv", "customer,sku,ts,name\n" + rows + "\n")
    out = tmp_path / "shop"
    argv = ["prepare", "--data", str(path), "--columns", "user=customer,item=sku,timestamp=ts,title=name",
            "--item-noun", "product", "--out", str(out), "--max-length", "256", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    test = load_from_disk(str(out / "sft" / "next_item"))["test"]
    assert len(test) == 6 and all("products" in p.lower() and "cust" not in p for p in test["prompt"])
    assert_no_leak(out)


def test_samples_built_in_two_processes_equal_the_sequential_ones(tokenizer):
    from llmrec import data
    from llmrec.data.clean import CleanOptions, clean
    from llmrec.data.split import leave_one_out
    from llmrec.prompting import building
    from llmrec.prompting.building import build_samples
    from llmrec.prompting.itemstats import ItemStats
    from llmrec.prompting.samples import SPLITS, SampleBuilder, SampleOptions
    from llmrec.prompting.templates import (
        PromptRenderer,
        domain_words,
        shipped_templates,
    )

    raw = data.load("ml-latest-small")
    catalog, inter, _ = clean(raw, CleanOptions())
    inter, _ = leave_one_out(inter, raw.ordered)
    inter = inter[inter["user_id"].isin(sorted(inter["user_id"].unique())[:40])]
    stats = ItemStats.from_interactions(catalog, inter)

    def build(workers: int):
        builder = SampleBuilder(catalog, shipped_templates(), PromptRenderer(tokenizer, 512), domain_words("movie"),
                                SampleOptions(train_targets_per_user=2), stats=stats)  # fmt: skip
        return build_samples(catalog, inter, builder, progress=False, workers=workers), builder.skipped

    def one_user_at_a_time():
        builder = SampleBuilder(catalog, shipped_templates(), PromptRenderer(tokenizer, 512), domain_words("movie"),
                                SampleOptions(train_targets_per_user=2), stats=stats)  # fmt: skip
        out = {t: {s: [] for s in SPLITS} for t in builder.options.tasks}
        for index, (user, events) in enumerate(building.user_events(catalog, inter)):
            for record in builder.user_records(user, events, index):  # each user's prompts fitted alone
                out[record["task"]][record["split"]].append(record)
        return out, builder.skipped

    chunk = building._CHUNK
    building._CHUNK = 7  # several chunks per worker
    try:
        sequential = build(1)
        assert build(2) == sequential
    finally:
        building._CHUNK = chunk
    assert one_user_at_a_time() == sequential  # a chunk's prompts counted together: the same records


def test_yes_no_labels_are_balanced_with_hard_negatives_first(ml_small: Path):
    from collections import Counter

    manifest = json.loads((ml_small / "manifest.json").read_text())
    shares = manifest["samples"]["yes_no_labels"]["train"]
    assert shares["disliked"] > 0 and shares["unseen"] > 0  # both kinds of negatives
    assert 0.4 <= shares["liked"] / sum(shares.values()) <= 0.6
    inter = pd.read_parquet(ml_small / "interactions.parquet")
    had = dict(zip(zip(inter["user_id"].astype(str), inter["item_id"].astype(str)), inter["liked"]))
    rows = load_from_disk(str(ml_small / "sft" / "yes_no"))["train"]
    kinds: dict[str, Counter] = {}
    for u, i, y in zip(rows["user_id"], rows["item_id"], rows["label"]):
        kind = "liked" if y else ("disliked" if (u, i) in had else "unseen")
        assert kind != "disliked" or not had[(u, i)]  # a No never names an item the user liked
        kinds.setdefault(u, Counter())[kind] += 1
    # each user: unseen negatives only make up what the hard negatives leave uneven
    assert all(k["unseen"] == max(0, k["liked"] - k["disliked"]) for k in kinds.values())


def test_unseen_negatives_are_the_one_by_one_draws():
    """Negatives drawn in arrays are the items, and leave the generator where, drawing one item
    at a time would: prepared data sets stay the same across versions."""
    from types import SimpleNamespace

    from llmrec.prompting.samples import SampleBuilder

    def one_by_one(rng, n_items, seen, k):
        picked = []
        while len(picked) < k:
            j = int(rng.integers(n_items))
            if j not in seen and j not in picked:
                picked.append(j)
        return picked

    for seed in range(200):
        n_items = 40 + seed
        seen = set(np.random.default_rng(seed).choice(n_items, size=seed % 7, replace=False).tolist())
        k = 1 + seed % 7  # few enough that rejection sampling is used (fewer than a quarter of the unseen)
        ours, reference = np.random.default_rng([1, seed]), np.random.default_rng([1, seed])
        got = SampleBuilder._unseen(SimpleNamespace(titles=[""] * n_items), ours, seen, k)
        assert got == one_by_one(reference, n_items, seen, k) and len(set(got)) == k and not set(got) & seen
        assert ours.integers(1 << 40) == reference.integers(1 << 40)
