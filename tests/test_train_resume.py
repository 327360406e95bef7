"""`llmrec train --resume`: a killed run continues to the weights of an uninterrupted one, a changed
recipe or other starting weights are refused, and a resumed run's tokens and rates add up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from support import TRAIN_ENV as ENV
from support import cli_toy_flags

from llmrec.cli import main
from llmrec.training.adapter import read_manifest
from llmrec.training.recipe import load_recipe
from llmrec.training.train import checkpoint_dir

KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from transformers import TrainerCallback
from llmrec.training.recipe import load_recipe
from llmrec.training.train import TrainOptions, train

class KillAtStep3(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:  # after checkpoint-2 was saved, before checkpoint-4
            os.kill(os.getpid(), signal.SIGKILL)

data, out, base = sys.argv[1:]
small = {"base": base, "max_steps": 4, "save_steps": 2, "batch_size": 2, "max_eval_samples": 4, "logging_steps": 1}
train(TrainOptions(Path(data), Path(out), load_recipe("quick").replace(**small), progress=False),
      callbacks=[KillAtStep3()])
"""


def test_resume_continues_a_killed_run(prepared_small: Path, toy_model: Path, tmp_path: Path):
    out = tmp_path / "a"
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(prepared_small), str(out), str(toy_model)], cwd=tmp_path,
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not out.exists()
    assert sorted(p.name for p in checkpoint_dir(out).glob("checkpoint-*")) == ["checkpoint-2"]

    argv = ["train", "--data", str(prepared_small), "--out", str(out), "--max-steps", "4", "--set", "save_steps=2"]
    assert main(argv + cli_toy_flags(toy_model)) == 2  # without --resume the old checkpoints are not clobbered
    assert main([*argv, *cli_toy_flags(toy_model), "--resume"]) == 0
    run = read_manifest(out)["training"]
    assert run["resumed_from"] == "checkpoint-2" and run["steps"] == 4
    assert not checkpoint_dir(out).exists()

    # resuming gives the weights of a run that was never interrupted
    whole = tmp_path / "whole"
    assert main(["train", "--data", str(prepared_small), "--out", str(whole), "--max-steps", "4",
                 "--set", "save_steps=2", *cli_toy_flags(toy_model)]) == 0
    resumed, straight = load_file(out / "adapter_model.safetensors"), load_file(whole / "adapter_model.safetensors")
    assert resumed.keys() == straight.keys()
    for key in resumed:
        assert (resumed[key] - straight[key]).abs().max().item() < 1e-5, key


def test_resume_refuses_a_changed_recipe(prepared_small: Path, toy_model: Path, tmp_path: Path, capsys):
    out = tmp_path / "a"
    argv = ["train", "--data", str(prepared_small), "--out", str(out), *cli_toy_flags(toy_model)]
    assert main([*argv, "--resume"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert main([*argv, "--keep-checkpoints"]) == 0
    assert main([*argv, "--overwrite", "--resume", "--set", "lora_r=16"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume with a changed lora_r" in err and "resume with what it was: --set lora_r=8" in err


def test_resume_refuses_other_init_adapter_weights(tmp_path: Path):
    from llmrec.errors import LlmrecError
    from llmrec.training.train import RUN_FILE, _check_resume

    record = {"base": "b", "data_manifest_sha256": "d", "recipe": {"init_adapter": "x"}, "init_adapter_sha256": "1"}
    (tmp_path / RUN_FILE).write_text(json.dumps(record))
    _check_resume(tmp_path, record)  # the same weights
    with pytest.raises(LlmrecError, match="other init_adapter weights than those there now"):
        _check_resume(tmp_path, {**record, "init_adapter_sha256": "2"})
    older = {k: v for k, v in record.items() if k != "init_adapter_sha256"}  # a run file from before the key
    (tmp_path / RUN_FILE).write_text(json.dumps(older))
    _check_resume(tmp_path, {**record, "init_adapter_sha256": "2"})


def test_a_resumed_runs_tokens_add_up_over_its_parts():
    from llmrec.training.record import token_segments

    # TRL counts tokens from the start of each process: a resume makes the count drop
    log = [{"loss": 1.0}, {"num_tokens": 100.0}, {"num_tokens": 250.0}, {"num_tokens": 40.0}, {"eval_loss": 1.0},
           {"num_tokens": 90.0}]  # fmt: skip
    assert token_segments(log) == [250, 90]
    assert token_segments([{"num_tokens": 5.0}, {"num_tokens": 9.0}]) == [9]
    assert token_segments([]) == []


def test_a_run_resumed_at_its_last_checkpoint_reports_no_rate():
    import time
    from types import SimpleNamespace as NS

    from llmrec.training.record import run_stats

    log = [{"num_tokens": 300.0, "loss": 1.0, "step": 10}]
    trainer = NS(state=NS(global_step=10, log_history=log, best_model_checkpoint=None, max_steps=10),
                 args=NS(gradient_checkpointing=False))  # fmt: skip
    recipe = load_recipe("quick").replace(max_steps=10)
    run = NS(resume_from="/x/checkpoint-10")
    stats = run_stats(trainer, NS(metrics={"train_runtime": 0.01}), recipe, run, "fp32", 4, time.perf_counter())
    assert stats["tokens"] == 300 and stats["steps_this_part"] == 0
    assert stats["tokens_per_second"] == 0.0 and stats["samples_per_second"] == 0.0
