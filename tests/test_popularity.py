"""The next-item fusion's popularity exponent: ``p_CF(item) * (1 + train interactions) ** beta``,
chosen by ``llmrec tune`` on the valid split and applied in every guided mode. The real tokenizer
on toy weights, the embedded ml-latest-small's first users."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from llmrec.collab import make
from llmrec.collab.guide import Guide, normalised, top
from llmrec.data import prepared
from llmrec.data.split import item_statistics


class Flat:
    """A collaborative model with no opinion, except a bonus for some items."""

    def __init__(self, n_items: int, bonus: dict[int, float] | None = None) -> None:
        self.n_items, self.bonus = n_items, bonus or {}

    def log_scores(self, inputs):
        out = np.zeros((len(inputs), self.n_items))
        for item, value in self.bonus.items():
            out[:, item] = value
        return out


def test_the_exponent_adds_beta_times_the_log_counts():
    model = make("itemknn").fit([[0, 1, 2], [1, 2], [2, 0]], 3)
    stats = {"count": np.array([4.0, 0.0, 9.0]), "liked": np.array([1.0, 0.0, 2.0])}
    guide = Guide("itemknn", model, ["a", "b", "c"], {}, stats)
    catalogue = ["c", "a", "new", "b"]  # serving order, with an item the model never saw
    plain = guide.log_scores([[1], [0, 3]], catalogue)
    got = guide.log_scores([[1], [0, 3]], catalogue, 0.5)
    counts = np.array([9.0, 4.0, 4.0, 0.0])  # "new": the median count, no opinion
    np.testing.assert_allclose(got, plain + 0.5 * np.log1p(counts))
    np.testing.assert_array_equal(guide.log_scores([[1]], catalogue, 0.0), plain[:1])


@pytest.fixture(scope="module")
def counted(toy_model, prepared_small):
    """The toy model's Recommender with an item-kNN guide and its train counts."""
    from llmrec.decoding.recommender import Recommender

    rec = Recommender.load(str(toy_model), prepared_small, device="cpu")
    _, interactions, _ = prepared.read_tables(prepared_small)
    seqs = prepared.sequences(interactions[interactions["split"] == "train"], rec.position)
    model = make("itemknn").fit([v["items"] for v in seqs.values()], len(rec.item_ids))
    rec.guide = Guide("itemknn", model, rec.item_ids, {}, item_statistics(interactions, rec.item_ids))
    return rec


def test_every_guided_mode_reads_the_tuned_exponent(counted):
    rec, history = counted, ["1", "2", "3"]
    positions = rec.resolve(history)
    plain = rec.guide.log_scores([positions], rec.item_ids)[0]
    pop = np.log1p(rec.guide.stats["count"])
    try:
        rec.fusion = {"mode": "cf"}  # no exponent, as adapters tuned before it: the model's own order
        assert [rec.position[r.item_id] for r in rec.recommend(history, 8)] == [i for i, _ in top(normalised(plain, positions), 8)]
        rec.fusion = {"mode": "cf", "popularity": 1.5}
        expected = top(normalised(plain + 1.5 * pop, positions), 8)
        got = rec.recommend(history, 8)
        assert [rec.position[r.item_id] for r in got] == [i for i, _ in expected]
        assert [r.score for r in got] == pytest.approx([s for _, s in expected], abs=1e-9)
        assert {i for i, _ in expected} != {i for i, _ in top(normalised(plain, positions), 8)}  # other candidates
        # rerank: the candidates and log p_CF are the exponent's too
        rec.fusion = {"mode": "rerank", "popularity": 1.5, "lambda": 0.5, "rerank_candidates": 8}
        cf = dict(expected)
        prompt = rec._prompt("next_item", positions, {})
        fused = sorted(((c, s + 0.5 * cf[c]) for c, s in zip(cf, rec.rerank_scores(prompt, list(cf)))), key=lambda p: -p[1])
        got = rec.recommend(history, 4)
        assert [rec.position[r.item_id] for r in got] == [c for c, _ in fused[:4]]
        assert [r.score for r in got] == pytest.approx([s for _, s in fused[:4]], abs=1e-5)
    finally:
        rec.fusion = {}


def test_generate_mode_hands_the_backend_the_exponents_weights(counted, monkeypatch):
    rec, history = counted, ["1", "2", "3"]
    positions = rec.resolve(history)
    seen = []

    def top_items(requests, k, length_normalize=False):
        seen.extend(requests)
        return [[] for _ in requests]

    monkeypatch.setattr(rec.backend, "top_items", top_items)
    try:
        for beta in (0.0, 1.5):
            rec.fusion = {"mode": "generate", "popularity": beta, "lambda": 2.0}
            rec.recommend(history, 5)
    finally:
        rec.fusion = {}
    plain = rec.guide.log_scores([positions], rec.item_ids)[0]
    np.testing.assert_allclose(seen[0].guide, plain)
    np.testing.assert_allclose(seen[1].guide, plain + 1.5 * np.log1p(rec.guide.stats["count"]))
    assert seen[1].guide_weight == 2.0 and sorted(seen[1].excluded) == sorted(positions)


def test_yes_no_ignores_the_exponent(counted):
    """The yes/no fusion reads log p_CF(target) of the collaborative model's own distribution (it has
    the item counts as inputs of its own)."""
    rec = counted
    weights = {"features": ["llm", "cf"], "coef": [1.0, 0.5], "intercept": 0.2}
    try:
        answers = []
        for beta in (0.0, 2.0):
            rec.fusion = {"mode": "cf", "popularity": beta, "yes_no": weights}
            answers.append(rec.predict_yes_no(["1", "2"], "3"))
        rec.fusion = {}
        alone = rec.predict_yes_no(["1", "2"], "3")
    finally:
        rec.fusion = {}
    assert answers[0] == answers[1] != alone


def test_tune_picks_the_exponent_the_valid_targets_reward():
    from llmrec.evaluation.tune import choose_popularity

    n = 6
    stats = {"count": np.array([50.0, 20.0, 10.0, 5.0, 1.0, 0.0]), "liked": np.zeros(n)}
    ids = [str(i) for i in range(n)]

    def chosen(model, pairs, betas=(0.0, 0.25, 1.0, 4.0)):
        rec = SimpleNamespace(guide=Guide("flat", model, ids, {}, stats), item_ids=ids)
        return choose_popularity(rec, pairs, list(betas))

    # the model has no opinion, the valid items are the two most popular: any exponent ranks them
    # first and second (the smaller exponent kept); without one they tie with every item
    got = chosen(Flat(n), {f"u{u}": ([5], u % 2) for u in range(10)})
    assert got["popularity"] == 0.25
    assert got["by_exponent"]["0"]["ndcg@10"] == pytest.approx(1 / np.log2(6), abs=1e-5)  # ties count against: 5th of 5
    # the model is right about an unpopular item: a large exponent buries it under popular ones
    got = chosen(Flat(n, {4: 2.0}), {f"u{u}": ([5], 4) for u in range(10)})
    assert got["popularity"] == 0.0 and got["by_exponent"]["4"]["hr@10"] == 1.0
    assert got["by_exponent"]["4"]["ndcg@10"] < got["by_exponent"]["0"]["ndcg@10"]
    assert got["held_out"]["chosen_by_fold"] == [0.0, 0.0]
    # half of the users want the model's item, half the most popular one: a small exponent lifts that
    # one above the rest and keeps the model's item first; a large one buries the model's item
    pairs = {f"u{u}": ([5], 4 if u % 2 else 0) for u in range(10)}
    got = chosen(Flat(n, {4: 2.0}), pairs)
    table = got["by_exponent"]
    assert got["popularity"] == 0.25 and table["0.25"]["ndcg@10"] > max(table[b]["ndcg@10"] for b in ("0", "1", "4"))


def test_the_exponent_must_be_a_number_at_least_zero():
    from llmrec.collab.guide import popularity_exponent
    from llmrec.errors import LlmrecError
    from llmrec.evaluation.tune import TuneOptions

    assert popularity_exponent({}, "m") == 0.0 and popularity_exponent({"popularity": 2}, "m") == 2.0
    for bad in (-0.5, "1", True, float("nan")):
        with pytest.raises(LlmrecError, match="m: fusion.popularity must be a number >= 0"):
            popularity_exponent({"popularity": bad}, "m")
    with pytest.raises(LlmrecError, match="--popularity-exponents: every value"):
        TuneOptions(model="x", popularity_exponents=["0", "-1"])
    assert TuneOptions(model="x", popularity_exponents=["1", "0", "1"]).betas == [0.0, 1.0]
