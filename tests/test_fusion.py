"""The fusion of the LLM and the collaborative model, tuned on the valid split (``llmrec tune``) of
a toy adapter: what it writes, the title priors, lambda and the candidate count, refitting the
collaborative model, older adapters, and that test events never reach the tuned values. A toy
Llama with the real tokenizer on the embedded ml-latest-small. The choices on synthetic scores
are in test_fusion_choice.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import with_other_test_events

from llmrec.collab import make
from llmrec.collab.guide import fit_guide, train_and_valid


@pytest.fixture(scope="module")
def fused_adapter(prepared_small, toy_model, tmp_path_factory):
    """A toy adapter with an item-kNN guide, its fusion tuned on the valid split."""
    from llmrec.evaluation.tune import TuneOptions, tune
    from llmrec.training.recipe import load_recipe
    from llmrec.training.train import TrainOptions, train

    out = tmp_path_factory.mktemp("fused") / "adapter"
    recipe = load_recipe("quick").replace(base=str(toy_model), max_steps=1, batch_size=2, max_eval_samples=2)
    train(TrainOptions(prepared_small, out, recipe, progress=False))
    fusion = tune(TuneOptions(model=out, data=str(prepared_small), device="cpu", users=12, candidates=10,
                              lambdas=["0", "0.5", "100"], progress=False))  # fmt: skip
    return out, fusion


def test_tune_writes_the_fusion_into_the_adapter(fused_adapter, prepared_small):
    from llmrec.decoding.recommender import Recommender

    out, fusion = fused_adapter
    assert fusion["lambda"] in (0.0, 0.5, 100.0)
    table = fusion["valid"]["by_lambda"]
    assert set(table) == {"0", "0.5", "100"} and fusion["valid"]["users"] == 12
    best = max(m["ndcg@10"] for m in table.values())
    assert table[f"{fusion['lambda']:g}"]["ndcg@10"] == best
    assert fusion["mode"] == ("cf" if fusion["valid"]["cf_alone"]["ndcg@10"] > fusion["valid"]["held_out"]["ndcg@10"]
                              else "rerank")  # fmt: skip
    by_exponent = fusion["valid"]["popularity"]["by_exponent"]  # the popularity exponent, on the guide alone
    assert fusion["popularity"] in (0, 0.25, 0.5, 0.75, 1, 1.5, 2) and len(by_exponent) == 7
    assert fusion["valid"]["popularity"]["users"] > fusion["valid"]["users"] == 12  # every valid user, not --users
    assert by_exponent[f"{fusion['popularity']:g}"]["ndcg@10"] == max(m["ndcg@10"] for m in by_exponent.values())
    by_score = fusion["valid"]["held_out_by_llm_score"]
    assert set(by_score) == {"sum", "pmi"} and by_score[fusion["llm_score"]] == max(by_score.values())
    assert fusion["valid"]["held_out"]["ndcg@10"] == by_score[fusion["llm_score"]]
    yes_no = fusion["yes_no"]
    assert yes_no["valid"]["samples"] > 10 and yes_no["valid"]["chosen"] in ("llm+cf", "llm+cf+items")
    assert yes_no["features"][:2] == ["llm", "cf"] and len(yes_no["coef"]) == len(yes_no["features"])
    assert set(yes_no["valid"]["held_out"]) == {"llm+cf", "llm+cf+items", "cf+items", "items"}
    rec = Recommender.load(out, prepared_small, device="cpu")
    assert rec.default_mode() == fusion["mode"] and rec.fusion["lambda"] == fusion["lambda"]
    assert rec.fusion["llm_score"] == fusion["llm_score"]
    # predict fuses too: the same request, with and without the tuned yes/no weights
    fused = rec.predict_yes_no(["1", "2"], "3")
    weights = rec.fusion.pop("yes_no")
    assert fused != rec.predict_yes_no(["1", "2"], "3") and 0.0 < fused < 1.0
    rec.fusion["yes_no"] = weights


def test_pmi_scores_are_the_title_scores_less_their_prior_kept_once(fused_adapter, prepared_small, tmp_path):
    import shutil

    from llmrec.decoding.recommender import Recommender
    from llmrec.errors import LlmrecError

    rec = Recommender.load(fused_adapter[0], prepared_small, device="cpu")
    history = rec.resolve(["1", "2"])
    prompt = rec._prompt("next_item", history, {})
    items = [rec.position[i] for i in ("3", "6", "10", "3")]
    sums = rec.rerank_scores(prompt, items)
    priors = rec.rerank_scores(rec._prompt("next_item", [], {}), items)
    assert priors != sums
    rec.scorer._priors.clear()  # none kept yet, as without a stored priors file
    calls = []
    label_logprobs = rec.backend.label_logprobs
    rec.backend.label_logprobs = lambda prompts, labels: calls.append(len(labels)) or label_logprobs(prompts, labels)
    pmi = rec.llm_item_scores(prompt, items, "pmi")
    np.testing.assert_allclose(pmi, np.subtract(sums, priors), atol=1e-4)
    assert calls == [4, 3]  # the user's prompt, then the three distinct titles' priors
    assert rec.llm_item_scores(prompt, items[:2], "pmi") == pytest.approx(pmi[:2], abs=1e-6) and calls[2:] == [2]
    # rerank with the tuned score: lambda 0 orders the collaborative candidates by pmi alone
    rec.fusion.update(mode="rerank", llm_score="pmi", rerank_candidates=10)
    recs = rec.recommend(["1", "2"], k=10, guide_weight=0.0)
    got = rec.llm_item_scores(prompt, [rec.position[r.item_id] for r in recs], "pmi")
    np.testing.assert_allclose([r.score for r in recs], got, atol=1e-4)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    copy = tmp_path / "adapter"
    shutil.copytree(fused_adapter[0], copy)
    manifest = json.loads((copy / "llmrec_adapter.json").read_text())
    manifest["fusion"]["llm_score"] = "prior"
    (copy / "llmrec_adapter.json").write_text(json.dumps(manifest))
    with pytest.raises(LlmrecError, match="fusion.llm_score 'prior': expected one of sum, pmi"):
        Recommender.load(copy, prepared_small, device="cpu")


def test_tune_stores_every_titles_prior_and_a_new_process_starts_with_them(fused_adapter, prepared_small, tmp_path):
    import shutil
    import warnings

    from llmrec.decoding.recommender import Recommender
    from llmrec.decoding.scoring import PRIORS_FILE
    from llmrec.errors import LlmrecError, LlmrecWarning
    from llmrec.evaluation.tune import _store_priors

    copy = tmp_path / "adapter"
    shutil.copytree(fused_adapter[0], copy)
    manifest = json.loads((copy / "llmrec_adapter.json").read_text())
    manifest["fusion"].update(mode="rerank", llm_score="pmi", rerank_candidates=10)
    (copy / "llmrec_adapter.json").write_text(json.dumps(manifest))
    rec = Recommender.load(copy, prepared_small, device="cpu")
    _store_priors(rec, rec.fusion, copy, progress=False)
    path = copy / PRIORS_FILE
    assert rec.fusion["priors"]["titles"] == len(rec.item_ids) and rec.fusion["priors"]["bytes"] == path.stat().st_size
    items = [rec.position[i] for i in ("3", "6", "10")]
    computed = rec.title_priors(items)

    fresh = Recommender.load(copy, prepared_small, device="cpu")  # a new process: the priors come from the file
    assert len(fresh.scorer._priors) == len(fresh.item_ids)
    calls = []
    label_logprobs = fresh.backend.label_logprobs
    fresh.backend.label_logprobs = lambda prompts, labels: calls.append(len(labels)) or label_logprobs(prompts, labels)
    assert fresh.title_priors(items) == pytest.approx(computed, abs=1e-5) and calls == []
    fresh.recommend(["1", "2"], k=5)
    assert calls == [10]  # the user's candidates only: no prior is computed

    # priors of other titles or another model are not used; a damaged file is an error naming it
    answers, key = rec.catalog_answers(), rec.scorer.model
    rec.scorer.write_priors(path, answers[::-1])  # the same titles in another order
    with pytest.warns(LlmrecWarning, match=f"{PRIORS_FILE}: computed for another model, prompt or tokenizer"):
        other = Recommender.load(copy, prepared_small, device="cpu")
    assert other.scorer._priors == {}
    rec.scorer.model = key.replace("|", "|0")  # other adapter weights
    rec.scorer.write_priors(path, answers)
    with pytest.warns(LlmrecWarning, match="computed for another model"):
        assert Recommender.load(copy, prepared_small, device="cpu").scorer._priors == {}
    rec.scorer.model = key
    path.write_bytes(b"not safetensors")
    with pytest.raises(LlmrecError, match=f"{PRIORS_FILE}: not a priors file"):
        Recommender.load(copy, prepared_small, device="cpu")
    manifest["fusion"]["llm_score"] = "sum"  # the file is read only when rerank scores by pmi
    (copy / "llmrec_adapter.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LlmrecWarning)
        Recommender.load(copy, prepared_small, device="cpu")
    # a tune that does not choose pmi removes the file
    fusion = {"mode": "cf", "llm_score": "pmi", "priors": {"file": PRIORS_FILE}}
    _store_priors(rec, fusion, copy, progress=False)
    assert not path.exists() and "priors" not in fusion


def test_tune_chooses_the_candidate_count_with_lambda(fused_adapter, prepared_small, tmp_path):
    import shutil

    from llmrec.evaluation.tune import TuneOptions, tune

    copy = tmp_path / "adapter"
    shutil.copytree(fused_adapter[0], copy)
    fusion = tune(TuneOptions(model=copy, data=str(prepared_small), device="cpu", users=12, candidates=25,
                              lambdas=["0", "100"], tasks=["next_item"], progress=False))  # fmt: skip
    sizes = fusion["valid"]["by_candidates"]
    assert list(sizes) == ["10", "20", "25"]
    recalls = [sizes[n]["candidate_recall"] for n in sizes]
    assert recalls == sorted(recalls)  # the top 10 are inside the top 20, inside the top 25
    best = max(m["ndcg@10"] for m in sizes.values())
    chosen = sizes[str(fusion["rerank_candidates"])]
    assert chosen["ndcg@10"] == best and chosen["lambda"] == fusion["lambda"]
    assert all(int(n) >= fusion["rerank_candidates"] for n, m in sizes.items() if m["ndcg@10"] == best)
    assert fusion["valid"]["by_lambda"][f"{fusion['lambda']:g}"]["ndcg@10"] == best
    # the top 10 of the 25 scored candidates are what tuning with 10 candidates scores
    ten = tune(TuneOptions(model=copy, data=str(prepared_small), device="cpu", users=12, candidates=10,
                           lambdas=["0", "100"], tasks=["next_item"], progress=False))  # fmt: skip
    assert ten["valid"]["by_candidates"]["10"] == pytest.approx(sizes["10"], abs=1e-4)


def test_an_older_adapter_fuses_with_a_b_c_and_tune_adds_its_item_statistics(fused_adapter, prepared_small, tmp_path):
    """An adapter tuned before the item statistics: (a, b, c) weights and no cf/item_stats."""
    import shutil

    from llmrec.collab.guide import fused_yes, logit, target_log_probs
    from llmrec.decoding.recommender import Recommender
    from llmrec.evaluation.tune import TuneOptions, tune

    copy = tmp_path / "adapter"
    shutil.copytree(fused_adapter[0], copy)
    stats = copy / "cf" / "item_stats.safetensors"
    written = stats.read_bytes()
    stats.unlink()
    manifest_path = copy / "llmrec_adapter.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["fusion"]["yes_no"] = {"a": 1.5, "b": 0.2, "c": 0.7, "valid": {}}
    manifest["fusion"].pop("popularity")  # nor the popularity exponent that came later
    manifest_path.write_text(json.dumps(manifest))
    rec = Recommender.load(copy, prepared_small, device="cpu")
    history, target = rec.resolve(["1", "2"]), rec.position["3"]
    rec.fusion.pop("yes_no")
    p_llm = rec.predict_yes_no(["1", "2"], "3")
    s_cf = target_log_probs(rec.guide, [history], [target], rec.item_ids)
    rec.fusion["yes_no"] = manifest["fusion"]["yes_no"]
    expected = fused_yes(np.column_stack([logit([p_llm]), s_cf]), rec.fusion["yes_no"])[0]
    assert rec.predict_yes_no(["1", "2"], "3") == pytest.approx(expected, abs=1e-9)
    fusion = tune(TuneOptions(model=copy, data=str(prepared_small), device="cpu", tasks=["yes_no"], progress=False))
    assert stats.read_bytes() == written  # the same train counts train wrote
    assert fusion["yes_no"]["coef"] == pytest.approx(fused_adapter[1]["yes_no"]["coef"], abs=1e-9)
    again = json.loads(manifest_path.read_text())
    assert again["cf"]["bytes"] == sum(p.stat().st_size for p in (copy / "cf").iterdir())


def test_a_fusion_the_adapter_cannot_apply_fails_at_load(fused_adapter, prepared_small, tmp_path):
    import shutil

    from llmrec.decoding.recommender import Recommender
    from llmrec.errors import LlmrecError
    from llmrec.evaluation.tune import TuneOptions, tune

    copy = tmp_path / "adapter"
    shutil.copytree(fused_adapter[0], copy)
    (copy / "cf" / "item_stats.safetensors").unlink()
    manifest_path = copy / "llmrec_adapter.json"
    manifest = json.loads(manifest_path.read_text())
    with_items = manifest["fusion"]["yes_no"]
    manifest["fusion"]["yes_no"] = {"features": ["llm", "cf"], "coef": [1.0, 0.1], "intercept": 0.0}
    for beta, error in ((0.5, "item_stats.safetensors: missing, and the adapter's next-item fusion"),
                        (-1, "llmrec_adapter.json: fusion.popularity must be a number >= 0"), (0, None)):  # fmt: skip
        manifest["fusion"]["popularity"] = beta
        manifest_path.write_text(json.dumps(manifest))
        if error is None:
            assert Recommender.load(copy, prepared_small, device="cpu").fusion["popularity"] == 0
            continue
        with pytest.raises(LlmrecError, match=error):
            Recommender.load(copy, prepared_small, device="cpu")
        if beta > 0:  # what the message says to do: tune counts them again before it loads the adapter
            tune(TuneOptions(model=copy, data=str(prepared_small), device="cpu", tasks=["next_item"], users=12,
                             candidates=10, lambdas=["0", "100"], progress=False))  # fmt: skip
            assert Recommender.load(copy, prepared_small, device="cpu").guide.stats is not None
            (copy / "cf" / "item_stats.safetensors").unlink()
    manifest["fusion"]["yes_no"] = {**with_items, "features": ["llm", "cf", "popularity", "liked"]}
    manifest["fusion"]["yes_no"]["coef"] = [*with_items["coef"][:2], 0.1, 0.1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(LlmrecError, match="item_stats.safetensors: missing, and the adapter's yes/no"):
        Recommender.load(copy, prepared_small, device="cpu")
    manifest["fusion"]["yes_no"] = with_items
    manifest["fusion"]["yes_no"]["coef"] = manifest["fusion"]["yes_no"]["coef"][:1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(LlmrecError, match="fusion.yes_no: expected one finite coef per feature"):
        Recommender.load(copy, prepared_small, device="cpu")


def test_tune_can_refit_the_collaborative_model_for_other_data(fused_adapter, prepared_small, tmp_path):
    """--cf replaces cf/ by a model fitted on --data's train split, and the fusion with a new one."""
    import shutil

    from llmrec.decoding.recommender import Recommender
    from llmrec.evaluation.tune import TuneOptions, tune

    copy = tmp_path / "adapter"
    shutil.copytree(fused_adapter[0], copy)
    assert json.loads((copy / "cf" / "config.json").read_text())["model"] == "itemknn"
    fusion = tune(TuneOptions(model=copy, data=str(prepared_small), device="cpu", users=12, candidates=10,
                              lambdas=["0", "100"], cf="popularity", progress=False))  # fmt: skip
    manifest = json.loads((copy / "llmrec_adapter.json").read_text())
    assert manifest["cf"]["model"] == "popularity" and manifest["cf"]["fitted_on"]["hashes"]
    assert manifest["cf"]["bytes"] == sum(p.stat().st_size for p in (copy / "cf").iterdir())
    assert set(fusion["valid"]["by_lambda"]) == {"0", "100"} and fusion["yes_no"]["valid"]["samples"] > 10
    rec = Recommender.load(copy, prepared_small, device="cpu")
    counts = fit_guide(prepared_small, "popularity").model.counts
    np.testing.assert_allclose(rec.guide.model.counts, counts)
    assert not list(tmp_path.glob("adapter/.cf*"))  # no temporary folder left behind


def test_tune_refits_within_the_adapter_recipes_size_budget(fused_adapter, prepared_small, tmp_path):
    """--cf keeps the collaborative weights within the recipe's cf_max_mb unless --cf-max-mb says otherwise."""
    import shutil

    import yaml

    from llmrec.collab import GRIDS, state_bytes
    from llmrec.data import prepared
    from llmrec.decoding.recommender import Recommender
    from llmrec.errors import LlmrecError
    from llmrec.evaluation.tune import TuneOptions, tune

    copy = tmp_path / "adapter"
    shutil.copytree(fused_adapter[0], copy)
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
    free = fit_guide(prepared_small, "itemknn")
    item_ids, train, _ = train_and_valid(*prepared.read_tables(prepared_small)[:2])
    n_items = len(item_ids)
    sizes = [state_bytes(make("itemknn", **s).fit(train, n_items)) for s in GRIDS["itemknn"]]
    assert min(sizes) < max(sizes)
    budget = min(sizes) / 1e6  # only the smallest settings fit
    (copy / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "cf_max_mb": budget}))
    tune(TuneOptions(model=copy, data=str(prepared_small), device="cpu", tasks=["yes_no"], cf="itemknn",
                     progress=False))  # fmt: skip
    manifest = json.loads((copy / "llmrec_adapter.json").read_text())
    assert manifest["cf"]["max_mb"] == budget and len(manifest["cf"]["tried"]["itemknn"]["over_budget"]) == sum(
        size > min(sizes) for size in sizes
    )
    assert state_bytes(Recommender.load(copy, prepared_small, device="cpu").guide.model) <= budget * 1e6
    tune(TuneOptions(model=copy, data=str(prepared_small), device="cpu", tasks=["yes_no"], cf="itemknn",
                     cf_max_mb=0, progress=False))  # fmt: skip
    manifest = json.loads((copy / "llmrec_adapter.json").read_text())
    assert manifest["cf"]["max_mb"] == 0 and manifest["cf"]["setting"] == free.report["setting"]
    (copy / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "cf_max_mb": "big"}))
    with pytest.raises(LlmrecError, match="recipe.yaml: cf_max_mb must be a number"):
        tune(TuneOptions(model=copy, data=str(prepared_small), device="cpu", tasks=["yes_no"], cf="itemknn",
                         progress=False))  # fmt: skip


def test_tuning_cannot_see_the_test_events(fused_adapter, prepared_small, tmp_path):
    """The same adapter tuned on a copy of the data whose test events were replaced: same fusion."""
    import shutil

    from llmrec.evaluation.tune import TuneOptions, tune

    out, fusion = fused_adapter
    changed = with_other_test_events(prepared_small, tmp_path / "changed", seed=1)
    copy = tmp_path / "adapter"
    shutil.copytree(out, copy)
    # without its item statistics, as an older adapter: tune counts them again from the changed data
    (copy / "cf" / "item_stats.safetensors").unlink()
    manifest_path = copy / "llmrec_adapter.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["fusion"]["yes_no"], manifest["fusion"]["popularity"]
    manifest_path.write_text(json.dumps(manifest))
    again = tune(TuneOptions(model=copy, data=str(changed), device="cpu", users=12, candidates=10,
                             lambdas=["0", "0.5", "100"], progress=False))  # fmt: skip
    assert (copy / "cf" / "item_stats.safetensors").is_file()
    for key in ("lambda", "mode", "rerank_candidates", "popularity"):
        assert again[key] == fusion[key]
    assert again["valid"]["by_lambda"] == fusion["valid"]["by_lambda"]
    assert again["valid"]["popularity"] == fusion["valid"]["popularity"]
    assert again["yes_no"]["features"] == fusion["yes_no"]["features"]
    assert again["yes_no"]["coef"] == pytest.approx(fusion["yes_no"]["coef"], abs=1e-9)
    assert again["yes_no"]["intercept"] == pytest.approx(fusion["yes_no"]["intercept"], abs=1e-9)
    assert again["yes_no"]["valid"]["held_out"] == fusion["yes_no"]["valid"]["held_out"]


def test_evaluate_reports_each_part_and_the_bootstrap_difference(fused_adapter, prepared_small, tmp_path):
    from llmrec.evaluation.evaluate import EvaluateOptions, evaluate

    out, _ = fused_adapter
    report = evaluate(EvaluateOptions(model=str(out), data=str(prepared_small), device="cpu", out=tmp_path / "e",
                                      users=8, k=[10], baselines=["popularity"], explain_users=0,
                                      progress=False))  # fmt: skip
    systems = report["systems"]
    assert {"llmrec", "llmrec-llm", "llmrec-cf", "popularity"} <= set(systems)
    assert systems["llmrec"]["users"] == systems["llmrec-cf"]["users"] == 8
    assert {"auc", "ece"} <= set(systems["llmrec"]) and "auc" in systems["llmrec-cf"]
    compared = report["comparisons"]["llmrec - popularity"]
    assert compared["users"] == 8
    low, high = compared["ndcg@10"]["ci95"]
    assert low <= compared["ndcg@10"]["difference"] <= high
    assert "paired bootstrap" in (tmp_path / "e" / "report.md").read_text()
