"""The base model of a training run and the LoRA config a recipe asks for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.models import resolve_model
from llmrec.training.recipe import Recipe


def resolve_precision(recipe: Recipe, cuda: bool, bf16_ok: bool) -> str:
    """fp32 / bf16 / fp16 for this device. ``auto`` picks bf16 where the device computes it
    natively (a GPU that has it; a CPU with AVX-512 BF16 or AMX), else fp16 on a GPU, fp32 on a CPU."""
    if recipe.precision == "auto":
        return "bf16" if bf16_ok else ("fp16" if cuda else "fp32")
    if recipe.precision == "fp16" and not cuda:
        raise LlmrecError(f"recipe '{recipe.name}': precision=fp16 needs a CUDA GPU; use fp32 or auto on CPU")
    return recipe.precision


def lora_config(recipe: Recipe):
    """The PEFT LoraConfig of a recipe: plain LoRA vLLM can serve (no DoRA, no bias, no saved modules)."""
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=recipe.target_modules,
        bias="none",
        use_dora=False,
        modules_to_save=None,
        task_type="CAUSAL_LM",
    )


def load_base(name: str | None, recipe: Recipe, precision: str, cuda: bool = True):
    """Base model and tokenizer; 4-bit NF4 when the recipe asks (CUDA and bitsandbytes needed).

    On a CPU the weights stay fp32 whatever the precision: bf16 there is mixed precision (the
    trainer's autocast), so the optimizer and the LoRA weights keep fp32 and only the matrix
    products run in bf16."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.models import not_found_message

    path = resolve_model(name)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if not cuda:
        dtype = torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if recipe.load_in_4bit:
        if not torch.cuda.is_available():
            raise LlmrecError(f"recipe '{recipe.name}': load_in_4bit needs a CUDA GPU (bitsandbytes); none found")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise LlmrecError("load_in_4bit needs bitsandbytes: pip install 'llmrec[gpu]'") from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float16 if precision == "fp16" else torch.bfloat16,
        )
        from accelerate import PartialState

        kwargs["device_map"] = {"": PartialState().local_process_index}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise LlmrecError(not_found_message(path, exc)) from None
    if recipe.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.gradient_checkpointing)
    return model, tokenizer


def check_tokenizer(tokenizer, prepared: dict[str, Any], base: str) -> None:
    """The data must have been rendered in this model's chat format (same end-of-answer token)."""
    expected = prepared.get("tokenizer", {}).get("end_of_answer")
    eos = tokenizer.eos_token
    if expected and eos != expected:
        raise LlmrecError(
            f"the data was prepared for answers ending in {expected!r}, but {base} ends them with {eos!r}; "
            f"re-run `llmrec prepare --model {base}`"
        )


def init_adapter_dir(recipe: Recipe) -> Path | None:
    """The folder of the recipe's ``init_adapter`` (``shipped``: the package's), or None."""
    from llmrec.training.adapter import shipped_adapter_dir

    if recipe.init_adapter is None:
        return None
    return shipped_adapter_dir() if recipe.init_adapter == "shipped" else Path(recipe.init_adapter).expanduser()


def _same_folder(a: str, b: str) -> bool:
    return Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve()


def check_init_adapter(folder: Path, recipe: Recipe, base_name: str, templates: dict[str, Any]) -> dict[str, Any]:
    """Check that a run can start from the adapter in ``folder``: same base model, LoRA rank,
    alpha and target modules as the recipe, and, for the tasks it trains, the data's
    templates: those it learned, or later versions of them. Returns what the new adapter records of it (its manifest's ``init_adapter``;
    ``templates``: those the adapter learned)."""
    from llmrec.files import sha256_file
    from llmrec.training.adapter import MANIFEST, read_manifest

    manifest = read_manifest(folder)
    where = f"init_adapter {folder}"
    base, data = manifest.get("base_model"), manifest.get("data")
    for field, value in (("base_model", base), ("data", data)):
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise LlmrecError(f"{folder / MANIFEST}: {field}.name: missing (not an llmrec adapter manifest)")
    data = data["name"]
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except json.JSONDecodeError as exc:
        raise LlmrecError(f"{folder / 'adapter_config.json'}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(config, dict):
        raise LlmrecError(f"{folder / 'adapter_config.json'}: not a PEFT adapter config (a JSON object)")
    if base_name not in (base.get("name"), base.get("hub_id")) and not _same_folder(base_name, str(base.get("name"))):
        raise LlmrecError(f"{where}: trained on base {base.get('name')}, this run's base is {base_name}")
    # the shape of the weights must match; dropout is the run's own (a training setting, not a weight)
    for key, ours in (("r", recipe.lora_r), ("lora_alpha", recipe.lora_alpha)):
        if config.get(key) != ours:
            raise LlmrecError(f"{where}: LoRA {key} {config.get(key)}, the recipe's is {ours} (set lora_r and "
                              "lora_alpha to match)")  # fmt: skip
    if recipe.target_modules != "all-linear":
        wanted = {recipe.target_modules} if isinstance(recipe.target_modules, str) else set(recipe.target_modules)
        theirs = config.get("target_modules") or []
        theirs = {theirs} if isinstance(theirs, str) else set(theirs)  # PEFT keeps a regex as one string
        if theirs != wanted:
            raise LlmrecError(f"{where}: LoRA on {sorted(theirs)}, the recipe asks for {sorted(wanted)}")
    learned = manifest.get("templates") or {}
    for task in recipe.tasks:
        ours, theirs = templates.get(task), learned.get(task)
        if not (ours and theirs) or all(theirs.get(k) == ours.get(k) for k in ("version", "sha256") if k in theirs):
            continue
        # a later version of the task's template is an upgrade the run teaches (yes_no v2 -> v3);
        # the same or an earlier version with other text is a template edited or gone back on
        if theirs.get("name") == ours.get("name") and int(ours.get("version", 0)) > int(theirs.get("version", 0)):
            continue
        raise LlmrecError(f"{where}: learned another {task} template (v{theirs.get('version')}) than the data's "
                          f"(v{ours.get('version')}); prepare the data with the template it learned or a later "
                          "version of it")  # fmt: skip
    return {"folder": "shipped" if recipe.init_adapter == "shipped" else str(folder.resolve()),
            "sha256": sha256_file(folder / "adapter_model.safetensors"), "data": data,
            "samples": (manifest.get("training") or {}).get("samples"), "templates": learned}  # fmt: skip


def start_from_adapter(model, folder: Path, dropout: float):
    """``model`` with the LoRA of ``folder`` loaded trainable, its weights in fp32 (an adapter saved
    in bf16 trains in fp32 like a new one), under the run's LoRA ``dropout``."""
    import torch
    from peft import PeftConfig, PeftModel

    local = model.name_or_path  # the folder the base was loaded from
    config = PeftConfig.from_pretrained(str(folder))
    config.lora_dropout = dropout
    model = PeftModel.from_pretrained(model, str(folder), is_trainable=True, config=config)
    # the adapter's config names the base by its hub id; saving checkpoints would then ask the hub
    # whether the vocabulary changed: the folder answers that without the network
    model.peft_config["default"].base_model_name_or_path = local
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.to(torch.float32)
    return model
