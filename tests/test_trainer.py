"""The trainer's CPU speed-ups keep TRL's semantics: the compact LM head gives TRL's loss and
gradients (in two processes too: tests/test_train.py), pre-tokenized rows are TRL's own tokenization, and precision follows the device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmrec.data import prepared
from llmrec.training.lora import lora_config, resolve_precision
from llmrec.training.mixture import mix
from llmrec.training.recipe import load_recipe
from llmrec.training.tokens import cache_key, tokenized
from llmrec.training.train import _checkpointing_arg
from llmrec.training.trainer import trainer_class


def rows_of(folder: Path, n: int = 12):
    splits = {t: prepared.load_sft(folder, t) for t in ("next_item", "yes_no", "explain")}
    return mix(splits, {t: 1.0 for t in splits}, seed=0, limit=n)


def build(toy_model: Path, tokenizer, rows, tmp_path: Path):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    torch.manual_seed(0)
    recipe = load_recipe("quick").replace(base=str(toy_model), lora_dropout=0.0)
    config = SFTConfig(output_dir=str(tmp_path / "run"), completion_only_loss=True, max_length=640, use_cpu=True,
                       bf16=False, per_device_train_batch_size=4, report_to="none", seed=0,
                       **{_checkpointing_arg(SFTConfig): False})  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(toy_model, dtype=torch.float32)
    return trainer_class()(model=model, args=config, train_dataset=rows, processing_class=tokenizer,
                           peft_config=lora_config(recipe))  # fmt: skip


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("num_items", [None, 50])
def test_compact_head_gives_trls_loss_and_gradients(prepared_small, toy_model, tokenizer, tmp_path, num_items):
    from trl import SFTTrainer

    trainer = build(toy_model, tokenizer, rows_of(prepared_small), tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    model.train()
    assert trainer._compact_head(model, batch)
    rows_seen = []
    head = model.get_base_model().get_output_embeddings()
    hook = head.register_forward_hook(lambda m, i, o: rows_seen.append(i[0].reshape(-1, i[0].shape[-1]).shape[0]))
    n = None if num_items is None else torch.tensor(num_items)

    ours = trainer.compute_loss(model, dict(batch), num_items_in_batch=n)
    ours.backward()
    ours_grads = grads(model)
    model.zero_grad()
    theirs = SFTTrainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=n)
    theirs.backward()
    hook.remove()

    labelled = batch["labels"][:, 1:] != -100
    label_tokens = int(labelled.sum())
    union = int(labelled.any(0).sum())  # positions where some row has a label
    # the head saw the label positions only (of every row: the batch is a rectangle)
    assert label_tokens <= rows_seen[0] == union * len(labelled) < batch["input_ids"].numel() // 4
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6), (ours.item(), theirs.item())
    for name, g in grads(model).items():
        assert torch.allclose(ours_grads[name], g, rtol=1e-4, atol=1e-7), name
    assert ours_grads  # LoRA weights got gradients
    logged = trainer._metrics["train"]
    assert len(logged["mean_token_accuracy"]) == 2 and logged["mean_token_accuracy"][0] == pytest.approx(
        logged["mean_token_accuracy"][1])


def test_compact_head_under_bf16_autocast_matches_trls_to_bf16_rounding(prepared_small, toy_model, tokenizer, tmp_path):
    """Under bf16 autocast (what `auto` trains in on a CPU with AVX-512 BF16 or AMX) the compact
    head gives TRL's loss, and TRL's gradients to bf16's rounding."""
    from trl import SFTTrainer

    trainer = build(toy_model, tokenizer, rows_of(prepared_small), tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    model.train()
    results = []
    for compute_loss in (trainer.compute_loss, lambda *a: SFTTrainer.compute_loss(trainer, *a)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = compute_loss(model, dict(batch))
        loss.backward()
        results.append((loss.detach(), grads(model)))
        model.zero_grad()
    (ours, ours_grads), (theirs, their_grads) = results
    with torch.no_grad():
        fp32 = trainer.compute_loss(model, dict(batch))
    assert ours.dtype == theirs.dtype == torch.float32
    assert torch.allclose(ours, theirs, rtol=1e-4), (ours.item(), theirs.item())
    assert ours.item() != fp32.item()  # autocast reached the model's products
    assert torch.allclose(ours, fp32, rtol=5e-2), (ours.item(), fp32.item())
    assert ours_grads.keys() == their_grads.keys() and ours_grads
    for name, g in their_grads.items():  # bf16 keeps ~3 significant digits
        assert (ours_grads[name] - g).abs().max() <= 0.02 * g.abs().max(), name


def test_pretokenized_rows_are_trls_own_tokenization(prepared_small, toy_model, tokenizer, tmp_path):
    rows = rows_of(prepared_small, 24)
    key = cache_key(tokenizer, "data-sha", {"next_item": 1.0}, 0, 24)
    ours = build(toy_model, tokenizer, tokenized(rows, tokenizer, tmp_path, key), tmp_path).train_dataset
    theirs = build(toy_model, tokenizer, rows, tmp_path).train_dataset
    assert ours["input_ids"] == theirs["input_ids"] and ours["labels"] == theirs["labels"]


def test_tokenized_rows_are_cached_by_key(prepared_small, tokenizer, tmp_path):
    rows = rows_of(prepared_small, 8)
    key = cache_key(tokenizer, "data-sha", {"yes_no": 1.0}, 0, 8)
    first = tokenized(rows, tokenizer, tmp_path, key)
    path = prepared.tokenized_path(tmp_path, key)
    assert (path / "dataset_info.json").is_file()
    written = (path / "dataset_info.json").stat().st_mtime_ns
    assert tokenized(rows, tokenizer, tmp_path, key)["input_ids"] == first["input_ids"]
    assert (path / "dataset_info.json").stat().st_mtime_ns == written  # read back, not written again
    assert cache_key(tokenizer, "data-sha", {"yes_no": 1.0}, 1, 8) != key  # another mixture, another entry
    assert sorted(p.name for p in path.parent.iterdir()) == [key]  # no temporary folder left


def test_auto_precision_follows_the_device():
    recipe = load_recipe("quick")
    assert resolve_precision(recipe, cuda=False, bf16_ok=True) == "bf16"
    assert resolve_precision(recipe, cuda=False, bf16_ok=False) == "fp32"
    assert resolve_precision(recipe, cuda=True, bf16_ok=False) == "fp16"
    assert resolve_precision(recipe.replace(precision="fp32"), cuda=False, bf16_ok=True) == "fp32"
