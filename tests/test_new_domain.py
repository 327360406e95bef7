"""A new domain as a user brings it: attribute-free data explains by co-occurrence, training keeps
the tasks the data supports, and the split exports to RecBole and reads back the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from support import run_failing, write

from llmrec import data
from llmrec.cli import main
from llmrec.data import prepared
from llmrec.prompting.evidence import AUDIENCE, cooccurrence_evidence


@pytest.fixture(scope="module")
def plain_log(tmp_path_factory) -> Path:
    """40 users over 30 titled items with no genres or tags; users 0-19 like 0-14, the rest 15-29."""
    rng = np.random.default_rng(1)
    rows = ["user,item,timestamp,title"]
    for u in range(40):
        pool = range(15) if u < 20 else range(15, 30)
        for n, i in enumerate(rng.choice(list(pool), 8, replace=False)):
            rows.append(f"u{u},i{i},{1000 * u + n},Gadget model {i}")
    return write(tmp_path_factory.mktemp("plain") / "log.csv", "\n".join(rows) + "\n")


def test_cooccurrence_evidence_on_a_worked_matrix():
    # item 0 co-occurs with item 1 three times and with item 2 once
    counts = sparse.csr_matrix(np.array([[4, 3, 1, 0], [3, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]))
    titles = ["T0", "T1", "T2", "T3"]
    assert cooccurrence_evidence([2, 1, 3], 0, counts, titles, own=False) == (["T1", "T2"], [AUDIENCE])
    # the user's own train events count once in every pair: taken off, item 2's single count vanishes
    assert cooccurrence_evidence([2, 1, 3], 0, counts, titles, own=True) == (["T1"], [AUDIENCE])
    assert cooccurrence_evidence([3], 0, counts, titles, own=False) == ([], [])


def test_data_without_attributes_explains_by_cooccurrence(plain_log: Path, tmp_path: Path, tokenizer):
    out = tmp_path / "p"
    assert main(["prepare", "--data", str(plain_log), "--out", str(out), "--no-progress"]) == 0
    manifest = prepared.read_manifest(out)
    assert manifest["samples"]["explain_source"] == "co-occurrence"
    rows = prepared.load_sft(out, "explain", "train")
    assert len(rows) > 20
    catalog = prepared.read_tables(out)[0].set_index("item_id")
    for row in rows:
        shown = {catalog.loc[h, "title"] for h in row["history"]}
        cited = [c.split('"')[0] for c in row["completion"].split(' "')[1:-1]]
        assert AUDIENCE in row["completion"] and cited and set(cited) <= shown


def test_training_drops_tasks_without_samples_unless_named(toy_model: Path, tmp_path: Path,
                                                           capsys):  # fmt: skip
    # a prepared folder with next_item and yes_no only: the quick recipe also asks for explain and rank
    partial = tmp_path / "partial"
    argv = ["prepare", "--data", str(data.embedded_path()), "--out", str(partial), "--tasks", "next_item", "yes_no",
            "--train-targets-per-user", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    out = tmp_path / "a"
    argv = ["train", "--data", str(partial), "--out", str(out), "--base", str(toy_model), "--max-steps", "1",
            "--set", "batch_size=2", "--set", "max_eval_samples=4", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "llmrec: warning: sft/explain: not prepared; training without it" in err
    manifest = json.loads((out / "llmrec_adapter.json").read_text())
    assert manifest["tasks"] == {"trained": ["next_item", "yes_no"], "dropped": {"explain": "not prepared",
                                                                                   "rank": "not prepared"}}  # fmt: skip
    assert set(manifest["recipe"]["tasks"]) == {"next_item", "yes_no"}
    assert "not trained: explain (not prepared)" in (out / "README.md").read_text()
    err = run_failing([*argv[:4], str(tmp_path / "b"), *argv[5:], "--tasks", "explain"], capsys)
    assert "has no sft/explain" in err


def test_export_to_recbole_reads_back_the_same_split(ml_small: Path, tmp_path: Path):
    out = tmp_path / "rb"
    assert main(["export", "--data", str(ml_small), "--out", str(out), "--name", "ml"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ml.inter", "ml.item", "ml.test.inter", "ml.train.inter",
                                                     "ml.valid.inter"]  # fmt: skip
    catalog, inter, _ = prepared.read_tables(ml_small)
    raw = data.load(out)  # llmrec's own RecBole reader, which picks ml.inter beside the split files
    assert raw.format == "recbole"
    key = ["user_id", "item_id", "timestamp", "rating"]
    back = raw.interactions[key].sort_values(key).reset_index(drop=True)
    mine = inter[key].astype({"user_id": str, "item_id": str}).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, mine, check_dtype=False)
    for split in ("train", "valid", "test"):
        rows = pd.read_csv(out / f"ml.{split}.inter", sep="\t", dtype=str)
        assert len(rows) == int((inter["split"] == split).sum())
    titles = raw.catalog.set_index("item_id")["title"]
    assert titles.loc["1"] == catalog.set_index("item_id").loc["1", "title"] == "Toy Story (1995)"


def test_quickstart_on_a_users_own_log(plain_log: Path, toy_model: Path, tmp_path: Path, capsys):
    out = tmp_path / "qs"
    argv = ["quickstart", "--data", str(plain_log), "--columns", "user=user,item=item,timestamp=timestamp,title=title",
            "--base", str(toy_model), "--users", "3", "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for step in ("== prepare", "== train (quick recipe)", "== evaluate", "== recommend", "quickstart:"):
        assert step in printed
    manifest = json.loads((out / "adapter" / "llmrec_adapter.json").read_text())
    assert manifest["base_model"]["name"] == str(toy_model)
    assert "explain" in manifest["tasks"]["trained"]  # explained by co-occurrence: the log has no attributes
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["systems"]) == {"llmrec", "popularity", "itemknn"} and report["config"]["users_evaluated"] == 3
    assert "Top 5 for user" in printed
