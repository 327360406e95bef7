"""The adapter shipped in the package: small, servable, reproducible from its recipe, loads with PEFT."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from llmrec.errors import LlmrecError
from llmrec.prompting.templates import shipped_version
from llmrec.training.adapter import MANIFEST, read_manifest, shipped_adapter_dir
from llmrec.training.recipe import from_mapping, load_recipe, servability_problems


def test_shipped_adapter_is_small_servable_and_made_by_the_shipped_recipes():
    folder = shipped_adapter_dir()
    manifest = read_manifest(folder)
    assert (folder / "adapter_model.safetensors").stat().st_size <= 10_000_000
    # the whole folder as installed (LoRA weights, collaborative model, priors, manifest, card)
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) <= 10_000_000
    assert servability_problems(json.loads((folder / "adapter_config.json").read_text())) == []
    # its last stage ran finetune/shipped_stats.yaml's settings (the run was named after the first
    # stage's recipe, with these as overrides); keys added since take their defaults
    last = load_recipe("shipped_stats")

    def settings(recipe):
        return {k: v for k, v in asdict(recipe).items() if k not in ("name", "description")}

    assert settings(from_mapping(manifest["recipe"], "manifest")) == settings(last)
    assert settings(load_recipe(folder / "recipe.yaml")) == settings(last)
    assert manifest["base_model"]["name"] == "smollm2-135m-instruct"
    assert manifest["training"]["steps"] == last.max_steps
    # the first stage: finetune/shipped.yaml's 800 steps
    assert manifest["init_adapter"]["folder"] == "shipped"
    assert manifest["init_adapter"]["samples"] == load_recipe("shipped").max_steps * load_recipe("shipped").batch_size * 2
    # trained on prompts rendered by templates this package ships (current, or an earlier version kept)
    for task, identity in manifest["templates"].items():
        assert shipped_version(task, identity["version"]).identity() == identity
    assert set(manifest["metrics"]["valid"]) == set(last.tasks)


def test_shipped_adapter_matches_the_embedded_data(ml_small: Path):
    data = json.loads((ml_small / "manifest.json").read_text())
    manifest = read_manifest(shipped_adapter_dir())
    assert manifest["data"]["catalog_hash"] == data["hashes"]["catalog"]
    assert manifest["data"]["interactions_hash"] == data["hashes"]["interactions"]


def test_the_shipped_priors_are_those_of_the_embedded_catalogue(backend):
    """A default process reads every title's prior from the adapter instead of computing them:
    the stored digest matches the embedded catalogue, templates, tokenizer and weights (checked
    with the real tokenizer on toy weights: the digest does not run the model)."""
    from llmrec.data import prepared
    from llmrec.decoding.recommender import Recommender
    from llmrec.decoding.scoring import PRIORS_FILE, model_key

    folder = shipped_adapter_dir()
    manifest = read_manifest(folder)
    assert manifest["fusion"]["llm_score"] == "pmi" and manifest["fusion"]["priors"]["file"] == PRIORS_FILE
    catalog, interactions, info = prepared.load(None)
    rec = Recommender(backend, catalog, interactions, info, manifest, None)
    rec.scorer.model = model_key(folder, manifest["base_model"]["name"])
    assert rec.scorer.read_priors(folder / PRIORS_FILE, rec.catalog_answers())
    assert len(rec.scorer._priors) == len(rec.item_ids) == manifest["fusion"]["priors"]["titles"]


def test_the_shipped_default_is_fused(backend, index):
    """The shipped adapter's default mode, for user 1 of the embedded data, is its tuned fusion of
    the LLM and its own collaborative model, not either alone (the Recommender built from its
    manifest and ``cf/`` as ``Recommender.load`` builds it, on toy weights)."""
    from llmrec.collab.guide import Guide
    from llmrec.data import prepared
    from llmrec.decoding.recommender import Recommender

    folder = shipped_adapter_dir()
    manifest = read_manifest(folder)
    catalog, interactions, info = prepared.load(None)
    try:
        rec = Recommender(backend, catalog, interactions, info, manifest, Guide.load(folder))
    finally:
        backend.set_catalog(index)  # the session's backend goes back to the shared index
    assert rec.default_mode() == manifest["fusion"]["mode"] in ("rerank", "generate")
    assert rec.mode_used(rec.user_history("1")) == rec.default_mode()


@pytest.mark.slow
def test_shipped_adapter_loads_on_the_embedded_model_with_peft(tokenizer):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmrec.models import resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model(None))
    ids = tokenizer("A user watched Toy Story (1995).", return_tensors="pt")
    with torch.no_grad():
        before = base(**ids).logits
    model = PeftModel.from_pretrained(base, shipped_adapter_dir())
    with torch.no_grad():
        after = model(**ids).logits
    assert torch.isfinite(after).all()
    assert not torch.allclose(before, after)  # the adapter changes the model


def test_a_folder_without_the_manifest_is_not_an_adapter(tmp_path: Path):
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(LlmrecError, match=f"not an llmrec adapter \\(no {MANIFEST}\\)"):
        read_manifest(tmp_path)
