"""Recipes: every shipped one loads and yields an adapter vLLM can serve; typos and bad values fail loudly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import REPO, write

from llmrec.cli import build_parser, main
from llmrec.cli.train import recipe_from_args
from llmrec.errors import LlmrecError
from llmrec.training.recipe import (
    Recipe,
    load_recipe,
    parse_override,
    servability_problems,
    shipped_recipes,
)


def test_the_shipped_recipes_are_the_files_in_finetune():
    files = {p.stem for p in (REPO / "finetune").glob("*.yaml")}
    assert files == set(shipped_recipes())
    assert {"quick", "full", "qlora", "shipped"} <= files


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "finetune").glob("*.yaml")))
def test_every_recipe_saves_an_adapter_vllm_can_serve(name: str, toy_model: Path, tmp_path: Path):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.training.lora import lora_config

    recipe = load_recipe(REPO / "finetune" / f"{name}.yaml")
    assert recipe.name == name and recipe.description
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(toy_model), lora_config(recipe))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["r"] == recipe.lora_r
    assert servability_problems(config) == []


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"r": 12}, "rank"),
        ({"use_dora": True}, "DoRA"),
        ({"bias": "all"}, "bias"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"target_modules": ["q_proj", "embed_tokens"]}, "embed_tokens"),
    ],
)
def test_servability_rules_flag_what_vllm_rejects(change: dict, problem: str):
    good = {"peft_type": "LORA", "r": 16, "bias": "none", "use_dora": False, "target_modules": ["q_proj"]}
    assert servability_problems(good) == []
    problems = servability_problems({**good, **change})
    assert len(problems) == 1 and problem in problems[0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("lora_rank: 8\n", "unknown key 'lora_rank' (did you mean 'lora_r'?)"),
        ("lora_r: 12\n", "lora_r=12: vLLM serves LoRA ranks 8, 16, 32, 64 only"),
        ("learning_rate: fast\n", "learning_rate: expected float, got 'fast'"),
        ("tasks: {next_itm: 1}\n", "unknown task 'next_itm'"),
        ("target_modules: [q_proj, lm_head]\n", "vLLM cannot serve LoRA on lm_head"),
        ("eval_steps: 30\nsave_steps: 50\n", "save_steps (50) must be a multiple of eval_steps"),
        ("early_stopping_patience: 2\n", "early_stopping_patience needs eval_steps > 0"),
        ("lora_r: [8\n", "not valid YAML"),
    ],
)
def test_bad_recipe_files_are_one_line_errors(tmp_path: Path, capsys, text: str, message: str):
    recipe = write(tmp_path / "r.yaml", text)
    with pytest.raises(LlmrecError) as info:
        load_recipe(recipe)
    assert message in str(info.value) and str(recipe) in str(info.value)
    # the same through the CLI: exit 2, one line, before any data is touched
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "a"), "--recipe", str(recipe)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_flags_override_the_recipe_which_overrides_the_defaults(tmp_path: Path):
    recipe = write(tmp_path / "r.yaml", "lora_r: 16\nlearning_rate: 1.0e-3\nmax_steps: 7\nbatch_size: 2\n")
    args = build_parser().parse_args(
        ["train", "--data", "d", "--out", "o", "--recipe", str(recipe), "--max-steps", "3",
         "--set", "lora_r=32", "--tasks", "yes_no", "rank", "--base", "some/model"]
    )
    got = recipe_from_args(args)
    assert (got.lora_r, got.max_steps, got.learning_rate, got.batch_size) == (32, 3, 1e-3, 2)
    assert got.tasks == {"yes_no": 1.0, "rank": 1.0} and got.base == "some/model"
    assert got.lora_dropout == Recipe().lora_dropout  # untouched keys keep the defaults


def test_no_recipe_means_the_quick_recipe():
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert recipe_from_args(args) == load_recipe("quick")


def test_set_reads_yaml_values_and_rejects_unknown_keys():
    assert parse_override("tasks={yes_no: 2}") == ("tasks", {"yes_no": 2})
    assert parse_override("base=null") == ("base", None)
    with pytest.raises(LlmrecError, match="expected KEY=VALUE"):
        parse_override("lora_r")
    with pytest.raises(LlmrecError, match="unknown key 'lora_alfa'"):
        Recipe().replace(lora_alfa=8)


def test_cli_rejects_an_unservable_rank(tmp_path: Path, capsys):
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "a"), "--set", "lora_r=12"]
    assert main(argv) == 2
    assert "vLLM serves LoRA ranks 8, 16, 32, 64 only" in capsys.readouterr().err


def test_unknown_recipe_name_lists_the_shipped_ones(capsys):
    assert main(["train", "--data", "d", "--out", "o", "--recipe", "quik"]) == 2
    err = capsys.readouterr().err
    assert "quik: no such recipe" in err and "quick" in err


def test_recipe_values_must_have_the_field_type():
    with pytest.raises(LlmrecError, match="lora_r: expected int"):
        Recipe().replace(lora_r=8.5)
    with pytest.raises(LlmrecError, match="load_in_4bit: expected bool"):
        Recipe().replace(load_in_4bit="yes")
    assert isinstance(Recipe().replace(learning_rate=1).learning_rate, float)
    # YAML 1.1 reads 1e-4 as a string; `--set learning_rate=1e-4` (the help's own example) is a number
    key, value = parse_override("learning_rate=1e-4")
    assert value == "1e-4" and Recipe().replace(**{key: value}).learning_rate == 1e-4
    with pytest.raises(LlmrecError, match="learning_rate: expected float"):
        Recipe().replace(learning_rate="nan")
