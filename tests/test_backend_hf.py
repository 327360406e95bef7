"""Constrained decoding through the transformers backend, on a toy Llama with the real tokenizer."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrec.decoding.backends import Backend, ItemSearch, renormalize_yes
from llmrec.decoding.index import answer_tokens
from llmrec.prompting.templates import PromptRenderer


def test_the_backend_meets_the_protocol(backend):
    assert isinstance(backend, Backend) and backend.device == "cpu"


def prompt_for(renderer: PromptRenderer, titles: list[str]) -> str:
    return renderer.chat("You recommend movies.", "Watched: " + "; ".join(titles) + ". Next?")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 9000), min_size=1, max_size=8, unique=True), st.integers(1, 6))
def test_every_item_is_in_the_catalogue_and_never_in_the_history(backend, index, catalog, renderer, history, k):
    titles = catalog["title"].tolist()
    prompt = prompt_for(renderer, [titles[i] for i in history])
    [got] = backend.top_items([ItemSearch(prompt, history)], k)
    assert len(got) == k
    assert all(0 <= item < len(titles) for item, _ in got)
    assert not {item for item, _ in got} & set(history)
    assert len({item for item, _ in got}) == k  # distinct items
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)


def test_candidates_only_and_same_output_twice(backend, index, renderer):
    prompts = [prompt_for(renderer, ["Heat (1995)"]), prompt_for(renderer, ["Casino (1995)", "Heat (1995)"])]
    requests = [ItemSearch(p, (), allowed) for p, allowed in zip(prompts, [[3, 17, 99, 1000], [5]])]
    first = backend.top_items(requests, 4)
    assert {i for i, _ in first[0]} == {3, 17, 99, 1000} and [i for i, _ in first[1]] == [5]
    assert backend.top_items(requests, 4) == first


def test_scores_are_the_answer_log_probabilities(backend, index, renderer):
    """Beam scores (no length normalisation) equal teacher-forced log-probs of the item's tokens,
    also for a shorter prompt left-padded in the same batch (the shared prompt cache must keep
    each row's positions and padding)."""
    prompts = [prompt_for(renderer, ["Heat (1995)"]), prompt_for(renderer, ["Casino (1995)", "Toy Story (1995)", "Up"])]
    assert len(set(len(backend.tokenizer(p)["input_ids"]) for p in prompts)) == 2
    for prompt, got in zip(prompts, backend.top_items([ItemSearch(p) for p in prompts], 3)):
        sequences = [index.sequences[item] for item, _ in got]
        [forced] = backend.label_logprobs([prompt], sequences)  # multi-token labels: teacher forcing
        for (_, score), expected in zip(got, forced):
            assert score == pytest.approx(expected, abs=1e-3)


def test_an_item_added_at_run_time_is_reachable(backend, index, renderer):
    tok = backend.tokenizer
    prefix = renderer.chat("system", "user")
    title = "Zyzzyva Quarterly: The Film (2031)"
    bigger = index.with_items(["new-1"], [title], answer_tokens(tok, [title], prefix, tok.eos_token))
    new = len(bigger) - 1
    backend.set_catalog(bigger)
    try:
        [got] = backend.top_items([ItemSearch(prompt_for(renderer, ["Heat (1995)"]), (), [new])], 1)
    finally:
        backend.set_catalog(index)
    assert got[0][0] == new and bigger.titles[new] == title


def test_renormalize_yes_on_worked_values():
    assert renormalize_yes(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)
    assert renormalize_yes(-1000.0, -1000.0 - math.log(3)) == pytest.approx(0.75)  # no underflow
    assert renormalize_yes(-math.inf, -math.inf) == 0.5


def test_label_log_probabilities_agree_across_scoring_paths(backend, renderer):
    tok = backend.tokenizer
    prefix = renderer.chat("s", "u")
    yes, no = (answer_tokens(tok, [label], prefix, "")[0] for label in ("Yes", "No"))
    assert len(yes) == len(no) == 1  # single tokens for SmolLM2: next-token scoring applies
    prompts = [renderer.chat("Answer Yes or No.", f"Will the user like {t}?") for t in ("Heat (1995)", "Up (2009)")]
    rows = backend.label_logprobs(prompts, [yes, no])
    # log-probabilities of two different tokens: each <= 0, their probabilities sum to < 1
    assert all(ly < 0 and ln < 0 and math.exp(ly) + math.exp(ln) < 1 for ly, ln in rows)
    # the same numbers through full-sequence scoring (the multi-token path)
    forced = backend._sequence_logprobs(prompts, [yes, no])
    assert torch.allclose(torch.tensor(rows), torch.tensor(forced), atol=1e-4)


def test_a_bf16_model_scores_through_an_fp32_head(toy_model, renderer):
    """On a GPU the model is loaded in bf16; its logits must not be rounded to bf16's steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.decoding.backends.hf import HFBackend

    model = AutoModelForCausalLM.from_pretrained(toy_model, dtype=torch.bfloat16).eval()
    with torch.no_grad():  # logits of tens, as a real LM's, where bf16 steps by 0.125-0.25
        model.get_output_embeddings().weight.mul_(300)
    tok = AutoTokenizer.from_pretrained(toy_model)
    backend = HFBackend(model, tok)
    ids = [tok.convert_tokens_to_ids(t) for t in ("Yes", "No", "The")]
    for title in ("Heat (1995)", "Up (2009)", "Alien (1979)"):
        prompt = renderer.chat("Answer Yes or No.", f"Will the user like {title}?")
        [got] = backend._next_token_logprobs([prompt], ids)
        with torch.no_grad():
            hidden = model.model(**tok(prompt, return_tensors="pt")).last_hidden_state[0, -1]
            weight = model.get_output_embeddings().weight
            fp32 = torch.log_softmax(hidden.float() @ weight.float().T, -1)[ids]
            bf16 = torch.log_softmax((hidden @ weight.T).float(), -1)[ids]
        assert (fp32 - bf16).abs().max() > 1e-2  # the rounding this guards against is visible here
        assert torch.allclose(torch.tensor(got), fp32, atol=1e-4)


def test_engine_agnostic_beam_search_is_exact_when_wide(backend, index, renderer):
    """The search the vLLM backend runs, with this backend as the engine: with beams >= candidates
    it must return the brute-force top-k by the answers' log-probabilities."""
    from llmrec.decoding.beam import beam_search

    prompts = [prompt_for(renderer, ["Heat (1995)"]), prompt_for(renderer, ["Toy Story (1995)"])]
    allowed = [list(range(40, 70)), list(range(500, 520))]
    masks = [index.node_mask([], a) for a in allowed]
    got = beam_search(backend.step_fn(prompts), index, masks, k=5, beams=30)
    for prompt, cands, result in zip(prompts, allowed, got):
        [forced] = backend.label_logprobs([prompt], [index.sequences[i] for i in cands])
        best = sorted(zip(cands, forced), key=lambda p: -p[1])[:5]
        assert [i for i, _ in result] == [i for i, _ in best]
        assert [s for _, s in result] == pytest.approx([s for _, s in best], abs=1e-3)
    # transformers' own constrained beam search can only find answers at or below the exact best
    [forced] = backend.label_logprobs(prompts[:1], [index.sequences[i] for i in allowed[0]])
    [theirs] = backend.top_items([ItemSearch(prompts[0], (), allowed[0])], 3)
    assert len(theirs) == 3 and theirs[0][1] <= max(forced) + 1e-3


@pytest.mark.parametrize("packed_tokens", [1024, 3])
def test_packed_teacher_forcing_equals_each_continuation_alone(backend, renderer, monkeypatch, packed_tokens):
    """Continuations scored as one token tree on the prompt's cache (shared prefixes, one of them
    a prefix of another, a single token; and split over several passes) give what each gives in
    a plain forward pass of prompt + continuation."""
    from llmrec.decoding.backends import hf

    monkeypatch.setattr(hf, "PACKED_TOKENS", packed_tokens)
    tok = backend.tokenizer
    prompt = renderer.chat("Recommend a movie.", "I liked Heat (1995).")
    texts = ["Toy Story (1995)", "Toy Soldiers (1991)", "Toy Story", "Heat (1995)", "Up"]
    conts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts] + [[tok.eos_token_id]]
    assert conts[2] == conts[0][: len(conts[2])] and len(conts[-1]) == 1
    ids = tok(prompt)["input_ids"]

    def alone(cont, gap=0):
        full = torch.tensor([ids + cont])
        positions = torch.arange(full.shape[1])[None]
        positions[:, len(ids) :] += gap  # gap > 0: what an off-by-one in the packed positions would do
        with torch.no_grad():
            logits = backend.model(input_ids=full, position_ids=positions).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        return sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(cont))

    # the toy weights attend almost uniformly; sharper queries and keys make positions and the
    # mask matter, so a wrong position id or a wrong ancestor would show (checked below)
    attention = [m for name, m in backend.model.named_modules() if name.endswith(("q_proj", "k_proj"))]
    saved = [m.weight.detach().clone() for m in attention]
    try:
        with torch.no_grad():
            for m in attention:
                m.weight.mul_(40.0)
        [got] = backend._sequence_logprobs([prompt], conts)
        for cont, score in zip(conts, got):
            assert score == pytest.approx(alone(cont), abs=1e-4)
        assert abs(alone(conts[1], gap=1) - alone(conts[1])) > 1e-3  # 10x the tolerance: positions matter here
    finally:
        with torch.no_grad():
            for m, w in zip(attention, saved):
                m.weight.copy_(w)
