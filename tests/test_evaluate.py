"""`llmrec evaluate` on a toy Llama with the real tokenizer, and the baselines on real data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec.cli import main
from llmrec.collab import make
from llmrec.data.prepared import history_and_target, sequences
from llmrec.decoding.recommender import Recommender
from llmrec.evaluation.metrics import rank_from_scores, ranking_metrics
from llmrec.prompting.prepare import prepared_folder

TIMING = {"latency_p50_s", "latency_p95_s", "users_per_s"}


def test_report_schema_and_shards_merge_to_one_run(toy_model: Path, prepared_small: Path, tmp_path: Path):
    common = ["evaluate", "--model", str(toy_model), "--data", str(prepared_small), "--device", "cpu",
              "--users", "6", "--baselines", "popularity", "--explain-users", "1", "--no-progress",
              "--k", "1,5,10"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "all")]) == 0
    report = json.loads((tmp_path / "all" / "report.json").read_text())
    assert set(report) == {"systems", "comparisons", "yes_no_comparisons", "config", "data_manifest"}
    assert set(report["systems"]) == {"llmrec", "popularity"}
    assert set(report["comparisons"]) == {"llmrec - popularity"}
    assert set(report["yes_no_comparisons"]) == {"llmrec - popularity"}
    llm = report["systems"]["llmrec"]
    assert {"hr@10", "ndcg@10", "mrr@10", "valid_rate", "auc", "uauc", "ece", "grounded_rate", "rank_hr@1"} <= set(llm)
    assert llm["valid_rate"] == 1.0 and llm["users"] == 6
    assert report["config"]["tuning"]["popularity"]["setting"]
    for name in ("report.md", "hr_ndcg.png", "reliability.png", "predictions.jsonl"):
        assert (tmp_path / "all" / name).stat().st_size > 0

    # llmrec in two shards without baselines, the baselines in a run of their own: merged = one run
    for i in (0, 1):
        assert main([*common, "--shard", f"{i}/2", "--baselines", "", "--out", str(tmp_path / f"s{i}")]) == 0
    assert main([*common, "--no-llmrec", "--out", str(tmp_path / "b")]) == 0
    shards = [str(tmp_path / name) for name in ("s0", "s1", "b")]
    assert main(["evaluate-merge", *shards, "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "report.json").read_text())
    assert merged["config"]["users_evaluated"] == 6 and merged["config"]["tuning"] == report["config"]["tuning"] | {
        "popularity": {**report["config"]["tuning"]["popularity"], "tune_s": merged["config"]["tuning"]["popularity"]["tune_s"]}}
    for system, metrics in report["systems"].items():
        for key, value in metrics.items():
            if key not in TIMING:
                assert merged["systems"][system][key] == pytest.approx(value), (system, key)
    assert merged["comparisons"] == report["comparisons"]  # the same users, the same seeded resamples


def test_common_users_compares_a_sample_with_a_run_over_more_users(toy_model: Path, prepared_small: Path, tmp_path: Path):
    common = ["evaluate", "--model", str(toy_model), "--data", str(prepared_small), "--device", "cpu", "--no-progress",
              "--k", "1,5", "--tasks", "next_item", "--explain-users", "0"]  # fmt: skip
    assert main([*common, "--users", "3", "--baselines", "popularity", "--out", str(tmp_path / "sample")]) == 0
    assert main([*common, "--users", "0", "--no-llmrec", "--baselines", "popularity", "--out", str(tmp_path / "b")]) == 0
    llm = tmp_path / "llm"
    assert main([*common, "--users", "3", "--baselines", "", "--out", str(llm)]) == 0
    argv = ["evaluate-merge", str(llm), str(tmp_path / "b"), "--out", str(tmp_path / "m")]
    assert main(argv) == 2  # different --users: refused unless asked to compare on common users
    assert main([*argv, "--common-users"]) == 0
    merged = json.loads((tmp_path / "m" / "report.json").read_text())
    sample = json.loads((tmp_path / "sample" / "report.json").read_text())
    assert merged["config"]["users_evaluated"] == 3
    for system, metrics in sample["systems"].items():
        for key, value in metrics.items():
            if key not in TIMING:
                assert merged["systems"][system][key] == pytest.approx(value), (system, key)
    assert merged["comparisons"] == sample["comparisons"]  # the same users, the same seeded resamples


def test_merging_a_shard_twice_or_other_data_is_an_error(toy_model: Path, prepared_small: Path, tmp_path: Path, capsys):
    argv = ["evaluate", "--model", str(toy_model), "--data", str(prepared_small), "--device", "cpu", "--users", "2",
            "--no-llmrec", "--baselines", "popularity", "--no-progress", "--out", str(tmp_path / "b")]  # fmt: skip
    assert main(argv) == 0
    assert main(["evaluate-merge", str(tmp_path / "b"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 2
    assert "is in two shards" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["data_manifest"]["hashes"]["interactions"] = "0" * 64  # another split of the same data
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    assert main(["evaluate-merge", str(tmp_path / "b"), str(tmp_path / "c"), "--out", str(tmp_path / "m")]) == 2
    assert "was split from other data" in capsys.readouterr().err


def test_a_baselines_only_run_does_not_load_the_model(prepared_small: Path, tmp_path: Path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(Recommender, "load", refuse)
    argv = ["evaluate", "--data", str(prepared_small), "--users", "3", "--no-llmrec", "--baselines", "popularity",
            "--no-progress", "--out", str(tmp_path / "b")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert set(report["systems"]) == {"popularity"} and report["systems"]["popularity"]["users"] == 3
    assert report["config"]["adapter"] is None  # no model was loaded, so no adapter was evaluated


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--k", "0,5"], "every K must be > 0"),
        (["--baselines", "popularity,bpr"], "unknown baseline 'bpr'"),
        (["--shard", "2/2"], "--shard 2/2"),
        (["--split", "valid", "--tasks", "next_itm"], "unknown task 'next_itm'"),
        (["--no-llmrec", "--baselines", ""], "nothing to evaluate"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys, extra, message):
    assert main(["evaluate", "--out", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_an_empty_split_is_a_one_line_error(toy_model: Path, prepared_small: Path, tmp_path: Path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for p in prepared_small.iterdir():
        (data / p.name).symlink_to(p, target_is_directory=p.is_dir())
    (data / "interactions.parquet").unlink()
    inter = pd.read_parquet(prepared_small / "interactions.parquet")
    inter.loc[inter["split"] == "test", "split"] = "train"
    inter.to_parquet(data / "interactions.parquet")
    argv = ["evaluate", "--model", str(toy_model), "--data", str(data), "--out", str(tmp_path / "r"), "--device", "cpu"]
    assert main(argv) == 2
    assert "the test split is empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, options",
    [("popularity", {}), ("itemknn", {}), ("sasrec", {"epochs": 8}), ("sasrec", {"epochs": 8, "negatives": 64})],
)
def test_each_baseline_beats_random_on_real_data(ml_small: Path, name: str, options: dict):
    catalog = pd.read_parquet(ml_small / "catalog.parquet")
    position = {str(i): n for n, i in enumerate(catalog["item_id"])}
    seqs = sequences(pd.read_parquet(ml_small / "interactions.parquet"), position)
    train = [[i for i, s in zip(v["items"], v["split"]) if s == "train"] for v in seqs.values()]
    pairs = [p for v in seqs.values() if (p := history_and_target(v, "valid")) is not None]
    model = make(name, **options).fit(train, len(catalog))
    if name == "sasrec":
        assert model.loss == ("sampled softmax, 64 negatives a batch" if options.get("negatives") else "full softmax")
    scores = model.score([h for h, _ in pairs])
    ranks = [rank_from_scores(scores[i], t, h) for i, (h, t) in enumerate(pairs)]
    hr = ranking_metrics(ranks, [10])["hr@10"]
    random_hr = 10 / len(catalog)
    assert hr > 5 * random_hr, f"{name}: hr@10 {hr:.4f} vs random {random_hr:.4f}"


def test_cached_preparation_is_redone_when_the_input_changes(tiny_movielens: Path, tmp_path: Path, tokenizer):
    cache = tmp_path / "cache"
    first = prepared_folder(str(tiny_movielens), False, cache)
    written = (first / "manifest.json").stat().st_mtime_ns
    assert prepared_folder(str(tiny_movielens), False, cache) == first
    assert (first / "manifest.json").stat().st_mtime_ns == written  # reused, not prepared again
    ratings = tiny_movielens / "ratings.csv"
    ratings.write_text(ratings.read_text() + "3,4,5.0,30\n")
    second = prepared_folder(str(tiny_movielens), False, cache)
    assert second != first
    counts = [json.loads((f / "manifest.json").read_text())["interactions"] for f in (first, second)]
    assert counts[1] == counts[0] + 1


def test_the_paired_auc_bootstrap():
    """The difference is the two AUCs' on the shared samples; a system against itself gives 0;
    a clearly better system's interval excludes 0, a noise-level one's does not."""
    from sklearn.metrics import roc_auc_score

    from llmrec.evaluation.report import paired_bootstrap_auc

    rng = np.random.default_rng(0)
    users = [f"u{n // 4}" for n in range(800)]
    y = rng.integers(0, 2, size=800)
    base = y + rng.normal(0, 2.0, size=800)  # a weak signal
    good = y + rng.normal(0, 0.7, size=800)  # a strong one
    noisy = base + rng.normal(0, 0.05, size=800)  # the weak one, barely moved

    def records(name, scores):
        return [{"system": name, "task": "yes_no", "user": u, "item": n, "label": int(y[n]), "score": float(s)}
                for n, (u, s) in enumerate(zip(users, scores))]  # fmt: skip

    all_records = records("a", good) + records("b", base) + records("c", noisy)
    better = paired_bootstrap_auc(all_records, "a", "b", samples=300)
    assert better["auc"]["difference"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, base), abs=1e-12)
    assert better["users"] == 200 and better["samples"] == 800
    assert 0 < better["auc"]["ci95"][0] < better["auc"]["difference"] < better["auc"]["ci95"][1]
    same = paired_bootstrap_auc(all_records, "b", "b", samples=50)
    assert same["auc"]["difference"] == 0 and same["auc"]["ci95"] == [0, 0]
    close = paired_bootstrap_auc(all_records, "c", "b", samples=300)
    assert close["auc"]["ci95"][0] < 0 < close["auc"]["ci95"][1]
