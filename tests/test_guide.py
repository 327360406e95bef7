"""Collaborative-guided decoding: node log-masses from one prefix sum, the product of experts in
both beam searches (transformers' and the engine-agnostic one vLLM uses), and the collaborative
model saved inside an adapter. A toy Llama with the real tokenizer; the catalogue is the
embedded ml-latest-small's. The fusion tuned on the valid split: tests/test_fusion.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from support import with_other_test_events

from llmrec.collab import make
from llmrec.collab.guide import Guide, fit_guide, train_and_valid
from llmrec.data import prepared
from llmrec.decoding.backends import ItemSearch
from llmrec.decoding.index import CatalogIndex
from llmrec.prompting.templates import PromptRenderer


def prompt(renderer: PromptRenderer, titles: list[str]) -> str:
    return renderer.chat("You recommend movies.", "Watched: " + "; ".join(titles) + ". Next?")


def brute_log_mass(index: CatalogIndex, log_weights: np.ndarray, permitted: set[int]) -> np.ndarray:
    """Per node, log of the normalised weight of the permitted items under it, item by item."""
    keep = sorted(permitted)
    p = np.exp(log_weights[keep] - log_weights[keep].max())
    p = dict(zip(keep, p / p.sum()))
    trie = index.trie
    out = np.full(trie.n_nodes, -np.inf)
    for node in range(trie.n_nodes):
        mass = sum(p.get(int(item), 0.0) for item in trie.order[trie.lo[node] : trie.hi[node]])
        out[node] = np.log(mass) if mass > 0 else -np.inf
    return out


def test_node_log_mass_is_the_permitted_mass_under_each_node(index):
    rng = np.random.default_rng(0)
    small = CatalogIndex(index.item_ids[:300], index.titles[:300], index.sequences[:300], index.vocab, index.end_token)
    weights = rng.normal(0, 3, len(small))
    excluded, allowed = [5, 17, 250], list(range(0, 300, 2)) + [17]
    got = small.node_log_mass(weights, excluded, allowed)
    expected = brute_log_mass(small, weights, set(allowed) - set(excluded))
    assert np.array_equal(np.isfinite(got), np.isfinite(expected))
    assert np.isfinite(got).sum() > 10
    np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], atol=1e-9)
    assert got[0] == pytest.approx(0.0)  # the root holds every permitted item: mass 1
    parents = small.trie.parent[1:]
    # a child holds less (up to the prefix sums' rounding, ~1e-16 of the total)
    assert np.all(got[1:][np.isfinite(got[1:])] <= got[parents][np.isfinite(got[1:])] + 1e-6)
    leaves = np.flatnonzero(small.trie.leaf_item >= 0)
    exact = expected[leaves]  # a finished answer's log-mass is exact
    assert np.array_equal(np.isfinite(got[leaves]), np.isfinite(exact))
    np.testing.assert_allclose(got[leaves][np.isfinite(exact)], exact[np.isfinite(exact)], rtol=1e-12)
    # a weight far under the best keeps a finite (floored) log-mass
    weights[3] = -1e6
    assert np.isfinite(small.node_log_mass(weights)[small.trie.leaf_item == 3]).all()


def test_lambda_zero_is_the_llm_alone(backend, index, renderer):
    prompts = [prompt(renderer, ["Heat (1995)"]), prompt(renderer, ["Casino (1995)", "Toy Story (1995)"])]
    history = [[10, 11], [3]]
    guide = np.random.default_rng(1).normal(0, 5, len(index))
    alone = backend.top_items([ItemSearch(p, h) for p, h in zip(prompts, history)], 5)
    zero = backend.top_items([ItemSearch(p, h, guide=guide, guide_weight=0.0) for p, h in zip(prompts, history)], 5)
    assert zero == alone


def test_a_large_lambda_gives_the_collaborative_top_k(backend, index, renderer):
    """With lambda large the LLM's part vanishes: an exhaustive beam returns the guide's order."""
    allowed = list(range(100, 160))
    guide = np.random.default_rng(2).normal(0, 2, len(index))
    request = ItemSearch(prompt(renderer, ["Heat (1995)"]), (120, 121), allowed, guide=guide, guide_weight=1e4)
    [got] = backend.top_items([request], 6, beams=len(allowed))
    permitted = [i for i in allowed if i not in (120, 121)]
    assert [i for i, _ in got] == sorted(permitted, key=lambda i: -guide[i])[:6]


def test_fused_scores_are_llm_plus_lambda_cf_in_both_searches(backend, index, renderer):
    """A finished answer scores log p_LLM(title) + lambda log p_CF(item | permitted), in the
    transformers search and in the engine-agnostic one, and both find the exact top-k when wide."""
    from llmrec.decoding.beam import beam_search

    text = prompt(renderer, ["Toy Story (1995)"])
    allowed, lam = list(range(400, 430)), 0.7
    guide = np.random.default_rng(3).normal(0, 2, len(index))
    [forced] = backend.label_logprobs([text], [index.sequences[i] for i in allowed])
    cf = guide[allowed] - np.log(np.exp(guide[allowed]).sum())
    exact = sorted(zip(allowed, np.asarray(forced) + lam * cf), key=lambda p: -p[1])[:4]
    request = ItemSearch(text, (), allowed, guide=guide, guide_weight=lam)
    [theirs] = backend.top_items([request], 4, beams=len(allowed))
    [ours] = beam_search(backend.step_fn([text]), index, [index.node_mask([], allowed)], 4, len(allowed),
                         bonuses=[request.bonus(index)])  # fmt: skip
    for got in (theirs, ours):
        assert [i for i, _ in got] == [i for i, _ in exact]
        assert [s for _, s in got] == pytest.approx([s for _, s in exact], abs=2e-3)


def test_the_vllm_backend_sends_guided_requests_to_the_shared_search(backend, index, renderer):
    """vLLM cannot run here, so its backend runs with the transformers model's one-token steps in
    place of the engine's. A guided request goes to the engine-agnostic search with the same mass
    arrays (also below the choice-list limit and at k = 1, where an unguided one would use vLLM's
    own searches) and gets the transformers backend's answer; an unguided one does not."""
    from llmrec.decoding.backends.vllm import VLLMBackend

    engine = object.__new__(VLLMBackend)  # no engine: only what top_items routes
    engine.index, engine.step_fn, routed = index, backend.step_fn, []
    engine._choice_search = lambda *args: routed.append("choice") or []
    engine._greedy = lambda prompts, *args: routed.append("greedy") or [[] for _ in prompts]
    text = prompt(renderer, ["Toy Story (1995)"])
    allowed = list(range(400, 430))
    guide = np.random.default_rng(4).normal(0, 2, len(index))
    request = ItemSearch(text, (401,), allowed, guide=guide, guide_weight=0.7)
    for k in (1, 4):
        [ours] = engine.top_items([request], k, beams=len(allowed))
        [theirs] = backend.top_items([request], k, beams=len(allowed))
        assert [i for i, _ in ours] == [i for i, _ in theirs] and len(ours) == k
        assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], abs=2e-3)
    assert routed == []
    engine.top_items([ItemSearch(text, (401,), allowed)], 4)
    engine.top_items([ItemSearch(text, (401,), allowed, guide=guide, guide_weight=0.0)], 4)  # lambda 0: unguided
    assert routed == ["choice", "choice"]


@pytest.mark.parametrize("name", ["popularity", "itemknn", "sasrec"])
def test_a_saved_guide_scores_like_the_fitted_model(name, tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.choice(40, size=int(rng.integers(3, 12)), replace=False).tolist() for _ in range(60)]
    options = {"sasrec": {"epochs": 2, "dim": 16}, "itemknn": {"neighbours": 10}}.get(name, {})
    model = make(name, **options).fit(sequences, 40)
    item_ids = [f"i{n}" for n in range(40)]
    Guide(name, model, item_ids, {"valid_ndcg@10": 0.1}).save(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "cf").iterdir():  # readable by whoever may read the install, as any file
        assert path.stat().st_mode & 0o044 == 0o044 & ~umask, path.name
    loaded = Guide.load(tmp_path)
    assert loaded.name == name and loaded.report == {"valid_ndcg@10": 0.1}
    histories = [[1, 2, 3], [39], []]
    np.testing.assert_allclose(loaded.log_scores(histories, item_ids), model.log_scores(histories), rtol=1e-6, atol=1e-6)
    # a catalogue with an item the model never saw: it gets the row's median weight
    served = loaded.log_scores(histories, item_ids + ["new"])
    assert served.shape == (3, 41) and np.array_equal(served[:, 40], np.median(served[:, :40], axis=1))
    assert list(loaded.unknown_items(item_ids + ["new"])) == [40]
    assert loaded.knows([1], item_ids) and not loaded.knows([], item_ids)


def test_fit_guide_never_reads_the_test_events(prepared_small, tmp_path):
    """The guide's choice, setting and weights depend on train and valid events only."""
    changed = with_other_test_events(prepared_small, tmp_path / "changed", seed=0)
    first, second = (fit_guide(folder, "itemknn") for folder in (prepared_small, changed))
    assert json.dumps(first.report["setting"]) == json.dumps(second.report["setting"])
    assert first.report["valid_ndcg@10"] == second.report["valid_ndcg@10"]
    assert (first.model.sim != second.model.sim).nnz == 0
    for name in ("count", "liked"):
        np.testing.assert_array_equal(first.stats[name], second.stats[name])


@pytest.mark.parametrize("order", [("popularity", "itemknn"), ("itemknn", "popularity")])
def test_auto_keeps_the_model_with_the_better_valid_ndcg(order, prepared_small, monkeypatch):
    """``--cf auto`` fits each candidate as ``--cf NAME`` would and keeps the better on valid,
    whichever is tried first; two fast models stand in for SASRec and item-kNN."""
    import llmrec.collab.guide as guide_module

    monkeypatch.setattr(guide_module, "AUTO", order)
    chosen = fit_guide(prepared_small, "auto")
    tried = chosen.report["tried"]
    assert set(tried) == {"popularity", "itemknn"}
    for name in tried:
        assert tried[name]["valid_ndcg@10"] == fit_guide(prepared_small, name).report["valid_ndcg@10"]
    assert tried["popularity"]["valid_ndcg@10"] != tried["itemknn"]["valid_ndcg@10"]  # a choice to make
    best = max(tried, key=lambda name: tried[name]["valid_ndcg@10"])
    assert chosen.name == best and chosen.report["valid_ndcg@10"] == tried[best]["valid_ndcg@10"]


def test_the_guide_is_tuned_like_the_baseline_within_its_size_budget(prepared_small):
    """Without a budget the guide is the baseline (same grid, same choice); with one, settings
    whose weights exceed it are skipped and recorded, and a budget nothing fits is an error."""
    from llmrec.collab import GRIDS, state_bytes, tune
    from llmrec.errors import LlmrecError

    free = fit_guide(prepared_small, "itemknn")
    item_ids, train, valid = train_and_valid(*prepared.read_tables(prepared_small)[:2])
    n_items = len(item_ids)
    _, baseline = tune("itemknn", train, n_items, valid)
    assert free.report["setting"] == baseline["setting"] and "over_budget" not in free.report["tried"]["itemknn"]

    sizes = {json.dumps(s): state_bytes(make("itemknn", **s).fit(train, n_items)) for s in GRIDS["itemknn"]}
    assert len(set(sizes.values())) > 1  # the fixture tells settings apart by size
    budget = sorted(set(sizes.values()))[1]  # the two smallest sizes fit, the others do not
    capped = fit_guide(prepared_small, "itemknn", max_mb=budget / 1e6)
    assert state_bytes(capped.model) <= budget and capped.report["max_mb"] == budget / 1e6
    over = capped.report["tried"]["itemknn"]["over_budget"]
    assert sorted(json.dumps({k: v for k, v in s.items() if k != "bytes"}) for s in over) == sorted(
        k for k, size in sizes.items() if size > budget
    )
    with pytest.raises(LlmrecError, match="cf_max_mb"):
        fit_guide(prepared_small, "itemknn", max_mb=min(sizes.values()) / 2e6)


@pytest.fixture(scope="module")
def guided(toy_model, prepared_small):
    """The toy model's Recommender with a popularity guide fitted on the train split."""
    from llmrec.decoding.recommender import Recommender

    rec = Recommender.load(str(toy_model), prepared_small, device="cpu")
    _, interactions, _ = prepared.read_tables(prepared_small)
    seqs = prepared.sequences(interactions[interactions["split"] == "train"], rec.position)
    rec.guide = Guide("popularity", make("popularity").fit([v["items"] for v in seqs.values()], len(rec.item_ids)),
                      rec.item_ids)  # fmt: skip
    return rec


def test_modes_of_a_recommender_with_a_guide(guided):
    rec, history = guided, ["1", "2", "3"]
    positions = rec.resolve(history)
    counts = rec.guide.model.counts
    cf = rec.recommend(history, 5, mode="cf")
    best = [i for i in np.argsort(-counts, kind="stable") if i not in positions][:5]
    assert [r.item_id for r in cf] == [rec.item_ids[i] for i in best]
    # generate with lambda 0 is the LLM alone
    assert [r.item_id for r in rec.recommend(history, 3, mode="generate", guide_weight=0.0)] == [
        r.item_id for r in rec.recommend(history, 3, mode="llm")]
    # rerank: the guide's top 8, each scored log p_LLM + lambda log p_CF
    rec.fusion = {"mode": "rerank", "lambda": 0.5, "rerank_candidates": 8}
    try:
        assert rec.default_mode() == "rerank"
        got = rec.recommend(history, 4)
        cands = [rec.position[r.item_id] for r in rec.recommend(history, 8, mode="cf")]
        prompt = rec._prompt("next_item", positions, {})
        cf_lp = {rec.position[r.item_id]: r.score for r in rec.recommend(history, 8, mode="cf")}
        fused = sorted(((c, s + 0.5 * cf_lp[c]) for c, s in zip(cands, rec.rerank_scores(prompt, cands))),
                       key=lambda p: -p[1])[:4]  # fmt: skip
        assert [rec.position[r.item_id] for r in got] == [c for c, _ in fused]
        assert [r.score for r in got] == pytest.approx([s for _, s in fused], abs=1e-5)
    finally:
        rec.fusion = {}
    assert rec.default_mode() == "llm"  # a guide without tuned fusion: the LLM alone


def test_a_mode_that_needs_a_guide_says_so(toy_model, prepared_small):
    from llmrec.decoding.recommender import Recommender
    from llmrec.errors import LlmrecError

    rec = Recommender.load(str(toy_model), prepared_small, device="cpu")
    with pytest.raises(LlmrecError, match="needs a collaborative model"):
        rec.recommend(["1"], 3, mode="rerank")
    with pytest.raises(LlmrecError, match="mode 'fused'"):
        rec.recommend(["1"], 3, mode="fused")


def test_new_items_and_unknown_histories_with_a_guide(guided):
    """An item added after training is a rerank candidate; a history the guide never saw gets the
    LLM's answer; a guide weight must be a number >= 0."""
    from llmrec.errors import LlmrecError

    rec = guided
    rec.fusion = {"mode": "rerank", "lambda": 0.5, "rerank_candidates": 5}
    try:
        rec.add_items(["new-1"], ["Zyzzyva Quarterly: The Film (2031)"])
        new = rec.position["new-1"]
        cands = []
        original = rec.llm_item_scores
        rec.llm_item_scores = lambda prompt, items: cands.extend(items) or original(prompt, items)
        try:
            rec.recommend(["1", "2", "3"], 3)
        finally:
            rec.llm_item_scores = original
        assert new in cands and len(cands) == 6  # the guide's top 5 and the new item
        # scored by pmi too: the new item is still a candidate, its prior computed on the grown catalogue
        rec.fusion["llm_score"] = "pmi"
        assert len(rec.recommend(["1", "2", "3"], 3)) == 3
        assert tuple(rec.index.sequences[new]) in rec.scorer._priors  # rerank took the new title's prior
        # a history of only the new item: the guide knows nothing of it, the LLM answers
        assert [r.item_id for r in rec.recommend(["new-1"], 3)] == [r.item_id for r in rec.recommend(["new-1"], 3, mode="llm")]
    finally:
        rec.fusion = {}
    for bad in (float("nan"), -1.0):
        with pytest.raises(LlmrecError, match="guide weight"):
            rec.recommend(["1"], 3, mode="generate", guide_weight=bad)


def test_text_embeddings_start_sasrec_from_the_titles(toy_model: Path):
    import torch

    from llmrec.collab.sasrec import SASRec
    from llmrec.collab.text import INIT_STD, project, title_embeddings

    titles = ["Heat (1995)", "Toy Story (1995)", "Toy Story 2 (1999)", "A", "Casino (1995)"]
    emb = title_embeddings(titles, str(toy_model), batch_size=2)
    assert emb.shape == (5, 16) and np.isfinite(emb).all()
    # batched by length or alone: the same reading of a title
    assert np.allclose(emb[2], title_embeddings(["Toy Story 2 (1999)"], str(toy_model))[0], atol=1e-5)
    init = project(emb, 8)
    assert init.shape == (5, 8) and abs(init.std() - INIT_STD) < 1e-6
    model = SASRec(dim=8, layers=1, heads=1, epochs=0, item_init=init).fit([[0, 1, 2], [1, 2, 3]], 5)
    assert torch.allclose(model.net.items.weight[1:], torch.as_tensor(init))  # no epoch run: still the titles
    with pytest.raises(ValueError, match="item_init"):
        SASRec(dim=8, epochs=0, item_init=init[:4]).fit([[0, 1]], 5)
