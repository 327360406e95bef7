"""Metrics against hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmrec.evaluation.metrics import (
    expected_calibration_error,
    rank_from_scores,
    rank_in_list,
    ranking_metrics,
    yes_no_metrics,
)


def test_perfect_ranking_gives_one_and_a_miss_zero():
    assert ranking_metrics([1, 1], [1, 10]) == {
        "hr@1": 1.0, "ndcg@1": 1.0, "mrr@1": 1.0, "hr@10": 1.0, "ndcg@10": 1.0, "mrr@10": 1.0,
    }  # fmt: skip
    assert ranking_metrics([math.inf], [5]) == {"hr@5": 0.0, "ndcg@5": 0.0, "mrr@5": 0.0}


def test_rank_three_gives_the_textbook_values():
    m = ranking_metrics([3], [1, 3, 5])
    assert m["hr@1"] == 0.0 and m["hr@3"] == 1.0
    assert m["ndcg@3"] == pytest.approx(1 / math.log2(4)) == pytest.approx(0.5)
    assert m["mrr@5"] == pytest.approx(1 / 3)
    # averaged over users: ranks 1, 3 and a miss
    m = ranking_metrics([1, 3, math.inf], [5])
    assert m["hr@5"] == pytest.approx(2 / 3)
    assert m["ndcg@5"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 3) / 3)


def test_ties_are_broken_against_the_system():
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    assert rank_from_scores(scores, 0) == 4  # one better, two tied: both count as above
    assert rank_from_scores(scores, 1) == 1
    assert rank_from_scores(np.zeros(100), 7) == 100  # a constant scorer is always last
    assert rank_from_scores(scores, 0, excluded=[1, 2]) == 2  # history items take no place
    assert rank_from_scores(np.array([np.nan, 1.0]), 0) == 2


def test_rank_in_a_returned_list():
    assert rank_in_list(["a", "b", "c"], None, "c") == 3
    assert rank_in_list(["a", "b", "c"], [-1.0, -2.0, -2.0], "b") == 3  # tied with c: pessimistic
    assert rank_in_list(["a", "b"], [-1.0, -2.0], "z") == math.inf


def test_yes_no_metrics_and_calibration():
    labels = [1, 0, 1, 0, 1, 0]
    probs = [0.9, 0.2, 0.7, 0.6, 0.4, 0.1]
    users = ["u", "u", "u", "v", "v", "v"]
    m = yes_no_metrics(labels, probs, users)
    # 9 (positive, negative) pairs, only (0.4, 0.6) misordered: 8/9
    pos, neg = [0.9, 0.7, 0.4], [0.2, 0.6, 0.1]
    by_hand = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / 9
    assert m["auc"] == pytest.approx(by_hand) == pytest.approx(8 / 9)
    assert m["uauc"] == pytest.approx((1.0 + 0.5) / 2)  # u: 0.9, 0.7 vs 0.2 -> 1; v: 0.4 vs 0.6, 0.1 -> 1/2
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    # perfectly calibrated bins give 0; always saying 1.0 for a 50/50 outcome gives 0.5
    assert expected_calibration_error([1, 0], [0.5, 0.5]) == pytest.approx(0.0)
    assert expected_calibration_error([1, 0], [1.0, 1.0]) == pytest.approx(0.5)


def test_baseline_scores_in_chunks_equal_one_block():
    from llmrec.collab import ItemKNN, ndcg10, score_chunks

    train = [[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 4], [1, 3]]
    model = ItemKNN(neighbours=3, shrink=0.0).fit(train, 5)
    histories = [[0], [1, 2], [3], [4, 0], [2]]
    blocks = list(score_chunks(model, histories, chunk=2))
    assert [start for start, _ in blocks] == [0, 2, 4]
    np.testing.assert_array_equal(np.concatenate([s for _, s in blocks]), model.score(histories))
    pairs = [(h, t) for h, t in zip(histories, [1, 3, 4, 1, 3])]
    assert 0.0 < ndcg10(model, pairs) <= 1.0


def test_rank_metrics_use_the_cut_offs_under_the_candidate_count_and_always_hr_at_1():
    from llmrec.evaluation.report import system_metrics

    ranks = [1, 2, 4, 10]  # the held-out item among 10 candidates
    rows = [{"system": "s", "task": "rank", "user": str(u), "candidates": 10, "rank": r} for u, r in enumerate(ranks)]
    only_ten = system_metrics(rows, [10], n_items=100)["s"]
    assert only_ten["rank_hr@1"] == 0.25 and not any(k.endswith("@10") for k in only_ten)
    more = system_metrics(rows, [1, 5, 10, 20], n_items=100)["s"]
    assert more["rank_hr@5"] == 0.75 and "rank_ndcg@5" in more and "rank_hr@20" not in more
