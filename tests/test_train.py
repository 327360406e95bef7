"""`llmrec train` on a toy-weights Llama with the real SmolLM2 tokenizer, one smoke run on the real
SmolLM2, and a 2-process `accelerate launch` on CPU (resuming: test_train_resume.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from support import TRAIN_ENV as ENV
from support import cli_toy_flags

from llmrec.cli import main
from llmrec.environment import cpu_bf16
from llmrec.training.adapter import read_manifest
from llmrec.training.mixture import mix
from llmrec.training.recipe import load_recipe, servability_problems
from llmrec.training.record import EMBEDDED_HUB_ID
from llmrec.training.train import TrainOptions, checkpoint_dir, train


def toy_recipe(base: Path, **changes):
    """The quick recipe, shrunk to seconds on the toy model."""
    small = {"base": str(base), "max_steps": 2, "batch_size": 2, "max_eval_samples": 4, "logging_steps": 1}
    return load_recipe("quick").replace(**{**small, **changes})


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") or p.name.endswith(".checkpoints"))


def test_toy_run_writes_a_standard_peft_adapter_with_its_manifest(
    prepared_small: Path, toy_model: Path, tmp_path, monkeypatch
):
    import trl.trainer.base_trainer
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reports = []
    monkeypatch.delenv("CI", raising=False)  # TRL skips its report under CI
    monkeypatch.setattr(trl.trainer.base_trainer, "send_telemetry", lambda *a, **k: reports.append((a, k)))
    out = tmp_path / "adapter"
    manifest = train(TrainOptions(prepared_small, out, toy_recipe(toy_model), progress=False))
    assert reports == []  # no usage report to the Hub

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(toy_model), out)
    assert model.peft_config["default"].r == 8
    assert read_manifest(out) == json.loads(json.dumps(manifest))
    data = json.loads((prepared_small / "manifest.json").read_text())
    assert manifest["data"]["catalog_hash"] == data["hashes"]["catalog"]
    assert manifest["templates"] == data["templates"]
    assert manifest["data"]["prompts"] == {k: data["samples"][k] for k in ("max_history", "max_length")}
    assert manifest["recipe"]["max_steps"] == 2 and manifest["training"]["steps"] == 2
    assert set(manifest["versions"]) >= {"torch", "transformers", "peft", "trl"}
    assert set(manifest["metrics"]["valid"]) == {"next_item", "yes_no", "rank", "explain"}
    assert all(math.isfinite(m["loss"]) for m in manifest["metrics"]["valid"].values())
    assert manifest["training"]["precision"] == ("bf16" if cpu_bf16() else "fp32") and manifest["training"]["tokens"] > 0
    assert manifest["training"]["gradient_checkpointing"] is False  # the recipe's value, not TRL's default
    assert [e["step"] for e in manifest["training"]["log"]] == [1, 2]  # the loss curve, one entry per logging step
    assert all(math.isfinite(e["loss"]) for e in manifest["training"]["log"])
    assert servability_problems(json.loads((out / "adapter_config.json").read_text())) == []
    assert load_recipe(out / "recipe.yaml") == toy_recipe(toy_model)
    assert "## Valid-split metrics" in (out / "README.md").read_text()
    # the collaborative model of the quick recipe, fitted on the train split and saved beside the LoRA weights
    assert manifest["cf"]["model"] == "itemknn" and manifest["cf"]["bytes"] > 0
    assert (out / "cf" / "config.json").is_file() and "## Collaborative model" in (out / "README.md").read_text()
    assert leftovers(tmp_path) == []  # no temporary folder, checkpoints removed after success


def test_the_recommender_renders_prompts_as_the_adapter_learned(prepared_small: Path, toy_model: Path, tmp_path):
    from llmrec.decoding.recommender import Recommender

    out = tmp_path / "adapter"
    manifest = train(TrainOptions(prepared_small, out, toy_recipe(toy_model, max_steps=1), progress=False))
    data = json.loads((prepared_small / "manifest.json").read_text())
    first = Recommender.load(out, prepared_small, device="cpu")
    assert first.max_history == data["samples"]["max_history"] and first.guide.name == "itemknn"
    manifest["data"]["prompts"]["max_history"] = 3  # as if trained on data prepared with --max-history 3
    (out / "llmrec_adapter.json").write_text(json.dumps(manifest))
    rec = Recommender.load(out, prepared_small, device="cpu")
    assert rec.max_history == 3 != data["samples"]["max_history"]
    history = rec.resolve(rec.user_history(rec.interactions["user_id"].iloc[0]))
    prompt = rec._prompt("next_item", history, {})
    assert len(history) > 3 and all(f"- {rec.titles[i]}\n" in prompt for i in history[-3:])
    assert f"- {rec.titles[history[-4]]}\n" not in prompt


def test_the_mixture_follows_the_task_weights(prepared_small: Path):
    from llmrec.data import prepared

    splits = {task: prepared.load_sft(prepared_small, task) for task in ("next_item", "yes_no")}
    n_next, n_yes = len(splits["next_item"]["train"]), len(splits["yes_no"]["train"])
    mixed = mix(splits, {"next_item": 2.0, "yes_no": 0.5}, seed=0)
    assert len(mixed) == 2 * n_next + round(0.5 * n_yes)
    assert mixed.column_names == ["prompt", "completion"]
    assert len(mix(splits, {"next_item": 1.0}, seed=0, limit=5)) == 5


def spoil_after_first_step():
    """A callback that adds large seeded noise to the LoRA weights after every step but the first,
    so the valid loss gets worse than its best (a learning rate alone does not reliably do that
    on the toy model: its near-uniform output only improves)."""
    import torch
    from transformers import TrainerCallback

    class Spoil(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step < 2:
                return
            generator = torch.Generator().manual_seed(state.global_step)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "lora_" in name:
                        p.add_(torch.randn(p.shape, generator=generator) * 3.0)

    return Spoil()


def test_early_stopping_stops_on_a_worse_valid_loss(prepared_small: Path, toy_model: Path, tmp_path):
    # the valid loss gets worse after step 2: patience 1 must end the run before max_steps
    recipe = toy_recipe(toy_model, max_steps=8, eval_steps=1, save_steps=1, early_stopping_patience=1,
                        tasks={"yes_no": 1.0})  # fmt: skip
    run = train(TrainOptions(prepared_small, tmp_path / "a", recipe, progress=False), [spoil_after_first_step()])
    run = run["training"]
    assert run["stopped_early"] and run["steps"] < 8
    assert run["best_checkpoint"] is not None


def test_max_minutes_ends_the_run_and_still_writes_the_adapter(prepared_small: Path, toy_model: Path, tmp_path):
    # a limit shorter than one step: the run stops after its first step, saves, evaluates (off its
    # eval_steps) and keeps that step as its best checkpoint, then writes the adapter
    recipe = toy_recipe(toy_model, max_steps=8, max_minutes=1e-6, tasks={"yes_no": 1.0}, eval_steps=4, save_steps=4,
                        early_stopping_patience=3)  # fmt: skip
    out = tmp_path / "a"
    run = train(TrainOptions(prepared_small, out, recipe, progress=False, keep_checkpoints=True))["training"]
    assert run["time_limit_hit"] and run["stopped_early"] and run["steps"] == 1
    assert run["best_checkpoint"] == "checkpoint-1" and (checkpoint_dir(out) / "checkpoint-1").is_dir()
    assert "stopped by the recipe's time limit (max_minutes 1e-06)" in (out / "README.md").read_text()
    assert (out / "adapter_model.safetensors").is_file() and read_manifest(out)["training"]["steps"] == 1
    # a cut run continues from its checkpoints with --resume --overwrite, to its max_steps
    resumed = recipe.replace(max_minutes=0, max_steps=3)
    run = train(TrainOptions(prepared_small, out, resumed, resume=True, overwrite=True, progress=False))["training"]
    assert not run["time_limit_hit"] and run["steps"] == 3 and run["resumed_from"] == "checkpoint-1"
    # no limit: the same recipe runs all its steps
    run = train(TrainOptions(prepared_small, tmp_path / "b", recipe.replace(max_steps=3, max_minutes=0), progress=False))
    assert not run["training"]["time_limit_hit"] and run["training"]["steps"] == 3


def test_a_run_can_start_from_another_adapters_lora(prepared_small: Path, toy_model: Path, tmp_path):
    import warnings

    import torch

    from llmrec.errors import LlmrecError
    from llmrec.training.lora import load_base, start_from_adapter

    small = {"cf": "none", "tasks": {"yes_no": 1.0}}
    first = tmp_path / "first"
    train(TrainOptions(prepared_small, first, toy_recipe(toy_model, lora_dropout=0.05, **small), progress=False))
    # an adapter names its base by hub id (as the shipped one does): saving must not ask the hub about it
    config = json.loads((first / "adapter_config.json").read_text())
    (first / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": EMBEDDED_HUB_ID}))
    # at a learning rate of ~0 a run keeps the LoRA it starts from: the first adapter's, not a new one
    still = {**small, "learning_rate": 1e-12, "max_steps": 1}
    second = tmp_path / "second"
    # dropout is the run's own, not the first adapter's
    recipe = toy_recipe(toy_model, init_adapter=str(first), lora_dropout=0.0, **{**still, "tasks": {"next_item": 1.0}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = train(TrainOptions(prepared_small, second, recipe, progress=False))
    assert not [w for w in caught if EMBEDDED_HUB_ID in str(w.message)]
    assert json.loads((second / "adapter_config.json").read_text())["lora_dropout"] == 0.0
    base, _ = load_base(str(toy_model), recipe, "fp32", cuda=False)
    dropouts = [m.lora_dropout["default"] for m in start_from_adapter(base, first, 0.0).modules()
                if hasattr(m, "lora_dropout") and "default" in m.lora_dropout]  # fmt: skip
    assert dropouts and all(isinstance(d, torch.nn.Identity) for d in dropouts)  # no masks drawn
    fresh = tmp_path / "fresh"
    train(TrainOptions(prepared_small, fresh, toy_recipe(toy_model, **still), progress=False))
    a, b, c = (load_file(str(f / "adapter_model.safetensors")) for f in (first, second, fresh))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    lora_b = [k for k in a if "lora_B" in k]
    assert lora_b and any(not torch.allclose(a[k], c[k], atol=1e-6) for k in lora_b)  # a new LoRA's B starts at 0
    assert manifest["init_adapter"]["folder"] == str(first.resolve()) and manifest["init_adapter"]["samples"] == 4
    assert f"started from the LoRA of the adapter `{first.resolve()}`" in (second / "README.md").read_text()
    # it trained next_item and still knows the yes_no template the first adapter learned
    assert set(manifest["templates"]) == {"next_item", "yes_no"}
    # an adapter of another shape is refused before anything is loaded
    with pytest.raises(LlmrecError, match="LoRA r 8, the recipe's is 16"):
        train(TrainOptions(prepared_small, tmp_path / "r16", toy_recipe(toy_model, init_adapter=str(first), lora_r=16,
                                                                         **small), progress=False))  # fmt: skip
    with pytest.raises(LlmrecError, match="not an llmrec adapter"):
        train(TrainOptions(prepared_small, tmp_path / "x", toy_recipe(toy_model, init_adapter=str(tmp_path), **small),
                           progress=False))  # fmt: skip
    # a task's template: a later version in the data is an upgrade the run teaches; other text at
    # the same version is refused
    path = first / "llmrec_adapter.json"
    learned = json.loads(path.read_text())
    ours = learned["templates"]["yes_no"]
    for version, allowed in ((ours["version"] - 1, True), (ours["version"], False), (ours["version"] + 1, False)):
        other = {**ours, "version": version, "sha256": "0" * 64}
        path.write_text(json.dumps({**learned, "templates": {**learned["templates"], "yes_no": other}}))
        run = toy_recipe(toy_model, init_adapter=str(first), **still)
        if allowed:
            assert train(TrainOptions(prepared_small, tmp_path / "up", run, progress=False))["templates"]["yes_no"] == ours
        else:
            with pytest.raises(LlmrecError, match=f"learned another yes_no template \\(v{version}\\)"):
                train(TrainOptions(prepared_small, tmp_path / "same", run, progress=False))
    assert leftovers(tmp_path) == []


# `llmrec train` with TRL's own SFTTrainer in place of llmrec's (the reference for the compact head)
WITH_TRLS_TRAINER = """
import sys
from trl import SFTTrainer
import llmrec.training.trainer
llmrec.training.trainer.trainer_class = lambda: SFTTrainer
from llmrec.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_process_accelerate_launch_on_cpu(prepared_small: Path, toy_model: Path, tmp_path: Path):
    """Two CPU processes (DDP over gloo) train the weights TRL's trainer trains in two processes.

    In fp32 whatever the CPU. On one with AVX-512 BF16, `auto` is bf16: there the two heads'
    gradients agree only to bf16's rounding (tests/test_trainer.py), and Adam's first steps,
    which move each weight by about the learning rate whatever its gradient's size, turn that
    into weight gaps of ~1e-3 at this learning rate."""
    accelerate = Path(sys.executable).with_name("accelerate")
    launch = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    (tmp_path / "trl_trainer.py").write_text(WITH_TRLS_TRAINER)
    adapters = {}
    for name, entry in [("ours", ["-m", "llmrec"]), ("trl", [str(tmp_path / "trl_trainer.py")])]:
        out = adapters[name] = tmp_path / name
        cmd = [*launch, *entry, "train", "--data", str(prepared_small), "--out", str(out), "--max-steps", "2",
               "--set", "lora_dropout=0", "--set", "learning_rate=1e-2", "--set", "precision=fp32", *cli_toy_flags(toy_model)]  # fmt: skip
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    run = read_manifest(adapters["ours"])["training"]
    assert run["processes"] == 2 and run["steps"] == 2 and run["samples"] == 8
    assert run["tokens"] == read_manifest(adapters["trl"])["training"]["tokens"]  # gathered over both processes
    ours, trl = (load_file(adapters[n] / "adapter_model.safetensors") for n in ("ours", "trl"))
    assert ours.keys() == trl.keys()
    moved = max((ours[k].float() - trl[k].float()).abs().max().item() for k in ours)
    assert moved < 1e-4
    assert any(v.abs().max() > 0 for k, v in ours.items() if "lora_B" in k)  # lora_B starts at zero: the steps moved it
    # Adam hides a constant factor in the gradients; the logged loss shows it
    logged = [[e["loss"] for e in read_manifest(adapters[n])["training"]["log"]] for n in ("ours", "trl")]
    assert len(logged[0]) == 2 and logged[0] == pytest.approx(logged[1], rel=1e-4)
    assert run["samples"] == 2 * 2 * 2  # steps x batch x processes
    assert done.stdout.count(f"{out}: 2 steps") == 1  # only the main process reports
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "{tmp}"], "not a prepared data folder (no manifest.json)"),
        (["--base", "llmrec-test-org/no-such-model"], "is not available offline"),
        (["--tasks", "explain", "--set", "max_steps=1"], None),
    ],
)
def test_bad_train_inputs_are_one_line_errors(prepared_small, tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    base = ["train", "--data", str(prepared_small), "--out", str(tmp_path / "a"), "--no-progress"]
    if message is None:  # an existing --out is kept
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "x").write_text("keep")
        message = "exists and is not empty; pass --overwrite"
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "a.checkpoints").exists()


def test_data_prepared_for_another_chat_format_is_refused(prepared_small, toy_model, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for p in prepared_small.iterdir():
        (other / p.name).symlink_to(p, target_is_directory=p.is_dir())
    (other / "manifest.json").unlink()
    manifest = json.loads((prepared_small / "manifest.json").read_text())
    manifest["tokenizer"]["end_of_answer"] = "</s>"
    (other / "manifest.json").write_text(json.dumps(manifest))
    argv = ["train", "--data", str(other), "--out", str(tmp_path / "a"), *cli_toy_flags(toy_model)]
    assert main(argv) == 2
    assert "re-run `llmrec prepare --model" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_two_lora_steps_on_the_real_smollm2(prepared_small: Path, tmp_path: Path):
    """Two LoRA steps on the real embedded model: B matrices (zero at init) move, losses stay finite."""
    recipe = load_recipe("quick").replace(max_steps=2, batch_size=2, max_eval_samples=2, logging_steps=1,
                                          tasks={"yes_no": 1.0})
    out = tmp_path / "a"
    manifest = train(TrainOptions(prepared_small, out, recipe, progress=False))
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(v.abs().max().item() > 0 for v in lora_b)
    assert all(math.isfinite(v.abs().sum().item()) for v in weights.values())
    assert math.isfinite(manifest["metrics"]["valid"]["yes_no"]["loss"])
    assert manifest["base_model"]["hub_id"] == EMBEDDED_HUB_ID
