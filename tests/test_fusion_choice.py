"""What ``llmrec tune`` decides from the scores it is given, on synthetic scores (no model): the
item statistics the yes/no fusion reads, older yes/no weights, held-out selection of its inputs,
and the next-item choices (the guide alone, a gain that does not hold out, the LLM score)."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.collab import make
from llmrec.collab.guide import Guide


def test_item_statistics_count_the_train_events_and_travel_with_the_guide(tmp_path):
    import pandas as pd

    from llmrec.collab.guide import item_statistics

    interactions = pd.DataFrame({"item_id": [1, 1, 2, 1, 3, 9], "liked": [True, False, True, True, True, True],
                                 "split": ["train", "train", "train", "valid", "test", "train"]})  # fmt: skip
    stats = item_statistics(interactions, ["1", "2", "3"])  # item 9 is not in the model's list
    assert stats["count"].tolist() == [2, 1, 0] and stats["liked"].tolist() == [1, 1, 0]
    model = make("popularity").fit([[0, 1]], 3)
    Guide("popularity", model, ["1", "2", "3"], {}, stats).save(tmp_path)
    loaded = Guide.load(tmp_path)
    served = loaded.item_stats(["3", "new", "1"])  # serving order, with an item the model never saw
    assert served["count"].tolist() == [0, 1, 2] and served["liked"].tolist() == [0, 1, 1]  # new: the medians
    (tmp_path / "cf" / "item_stats.safetensors").unlink()
    assert Guide.load(tmp_path).stats is None  # an adapter from before the statistics still loads


def test_a_fusion_tuned_before_the_item_statistics_still_reads():
    from llmrec.collab.guide import fused_yes, fusion_inputs

    old = {"a": 0.8, "b": 0.1, "c": -0.5}
    names, coef, intercept = fusion_inputs(old)
    assert names == ["llm", "cf"] and coef.tolist() == [0.8, 0.1] and intercept == -0.5
    x = np.array([[0.3, -7.0], [-1.2, -12.0]])
    np.testing.assert_allclose(fused_yes(x, old), 1 / (1 + np.exp(-(0.8 * x[:, 0] + 0.1 * x[:, 1] - 0.5))))


def test_held_out_fusion_scores_never_see_their_own_labels():
    """Each half of the users is scored by weights fitted on the other half: changing the labels
    of one half moves the other half's scores and never its own."""
    from llmrec.evaluation.yes_no_fusion import held_out

    rng = np.random.default_rng(0)
    users = [f"u{n % 40}" for n in range(400)]
    x = rng.normal(size=(400, 3))
    labels = (x[:, 0] + rng.normal(size=400) > 0).astype(int)
    names = ["llm", "cf", "popularity"]
    first = held_out(x, labels, users, 3, names)
    u = users[0]
    mine = np.asarray([v == u for v in users])
    flipped = labels.copy()
    flipped[mine] = 1 - flipped[mine]
    second = held_out(x, flipped, users, 3, names)
    np.testing.assert_allclose(second[mine], first[mine])  # u's scores come from the other half's fit
    assert not np.allclose(second[~mine], first[~mine])  # and u's labels moved that half's weights


def test_the_collaborative_model_alone_is_chosen_only_when_it_beats_the_fusion():
    from llmrec.evaluation.tune import choose_next_item

    cands = list(range(10))
    cf = np.log(np.linspace(0.2, 0.02, 10))  # the guide ranks the target (item 3) fourth
    hurting = np.zeros(10)
    hurting[3] = -1e4  # an LLM sure the target is wrong: any finite lambda sinks it
    scored = [(cands, hurting, cf, 3)] * 8
    chosen = choose_next_item(scored, [0.0, 1.0, 100.0], 10)
    assert chosen["mode"] == "cf" and chosen["valid"]["cf_alone"]["ndcg@10"] == pytest.approx(1 / np.log2(5), abs=1e-4)
    helping = -hurting  # an LLM sure of the target: lambda 0 puts it first
    chosen = choose_next_item([(cands, helping, cf, 3)] * 8, [0.0, 1.0, 100.0], 10)
    assert chosen["mode"] == "rerank" and chosen["lambda"] == 0.0 and chosen["valid"]["by_lambda"]["0"]["ndcg@10"] == 1.0
    level = np.zeros(10)  # an LLM with no opinion: the fusion is the guide's order, which is kept (a tie)
    chosen = choose_next_item([(cands, level, cf, 3)] * 8, [0.0, 1.0], 10)
    assert chosen["mode"] == "rerank" and chosen["lambda"] == 1.0


def test_a_fusion_whose_gain_does_not_hold_out_leaves_the_llm_out():
    from llmrec.evaluation.tune import choose_next_item

    cands = list(range(10))
    cf = np.log(np.linspace(0.2, 0.02, 10))  # the guide ranks the target (item 3) fourth
    right, wrong = np.zeros(10), np.zeros(10)
    right[3], wrong[3] = 0.5, -0.5  # lambda 0 puts the target first, or last
    # the users of the fold choose_next_item will hold out first get an LLM that is right, the
    # others one that is wrong: on all users lambda 0 wins, but each half would pick the other's worst
    folds = np.random.default_rng(0).permutation(8) % 2
    scored = [(cands, right if f == 0 else wrong, cf, 3) for f in folds]
    chosen = choose_next_item(scored, [0.0, 100.0], 10)
    assert chosen["lambda"] == 0.0 and chosen["valid"]["by_lambda"]["0"]["ndcg@10"] > chosen["valid"]["cf_alone"]["ndcg@10"]
    held = chosen["valid"]["held_out"]
    assert [c["lambda"] for c in held["chosen_by_fold"]] == [100.0, 0.0]
    assert held["ndcg@10"] < chosen["valid"]["cf_alone"]["ndcg@10"] and chosen["mode"] == "cf"


def test_the_llm_score_less_its_title_prior_is_chosen_when_only_it_holds_out():
    from llmrec.errors import LlmrecError
    from llmrec.evaluation.tune import TuneOptions, choose_next_item

    cands = list(range(10))
    cf = np.log(np.linspace(0.2, 0.02, 10))  # the guide ranks the target (item 3) fourth
    prior = np.zeros(10)
    prior[7] = 5.0  # a title the LLM always expects, whoever the user is
    llm = prior.copy()
    llm[3] = 1.0  # and what the history adds: the target
    scored = [(cands, llm, cf, 3)] * 8
    chosen = choose_next_item(scored, [0.0, 100.0], 10, priors=[prior] * 8)
    by_score = chosen["valid"]["held_out_by_llm_score"]
    assert chosen["llm_score"] == "pmi" and by_score["pmi"] == 1.0 and by_score["sum"] < 1.0
    assert chosen["mode"] == "rerank" and chosen["lambda"] == 0.0
    # a prior that changes nothing ties, and the plain sum is kept
    flat = choose_next_item(scored, [0.0, 100.0], 10, priors=[np.full(10, 2.0)] * 8)
    assert flat["llm_score"] == "sum" and flat["valid"]["held_out_by_llm_score"]["pmi"] == by_score["sum"]
    only = choose_next_item(scored, [0.0, 100.0], 10, priors=[prior] * 8, llm_scores=["sum"])
    assert only["llm_score"] == "sum" and list(only["valid"]["held_out_by_llm_score"]) == ["sum"]
    with pytest.raises(LlmrecError, match="--llm-scores: expected sum and/or pmi, got sum,prior"):
        TuneOptions(model="x", llm_scores=["sum", "prior"])
    with pytest.raises(LlmrecError, match="no LLM score to choose from among pmi"):
        choose_next_item(scored, [0.0], 10, llm_scores=["pmi"])  # pmi without priors
