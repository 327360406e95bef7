"""``llmrec train``: LoRA/QLoRA finetuning with TRL's SFTTrainer on a prepared data folder.

The loss is on the completion only; the tasks are mixed by the recipe's weights. Checkpoints go
to ``OUT.checkpoints/`` (what ``--resume`` continues from); the finished adapter is written to a
temporary folder and renamed to ``OUT``. Under ``accelerate launch`` every process trains and
only the main one writes the adapter.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmrec.collab.guide import fit_guide
from llmrec.data import prepared
from llmrec.errors import LlmrecError
from llmrec.files import atomic_dir, sha256_file
from llmrec.models import EMBEDDED_MODEL
from llmrec.options import option
from llmrec.training.adapter import CARD, MANIFEST, RECIPE_FILE, model_card
from llmrec.training.lora import (
    check_init_adapter,
    check_tokenizer,
    init_adapter_dir,
    load_base,
    lora_config,
    resolve_precision,
    start_from_adapter,
)
from llmrec.training.mixture import mix, task_splits, valid_sets
from llmrec.training.recipe import Recipe, servability_problems
from llmrec.training.record import build_manifest, run_stats

RUN_FILE = "llmrec_run.json"
DDP_TIMEOUT_S = 6 * 3600
# A resumed run must train the same thing; these may change between a kill and --resume.
_RESUMABLE_CHANGES = {"max_steps", "max_minutes", "epochs", "eval_steps", "save_steps", "save_total_limit",
                      "logging_steps", "early_stopping_patience", "max_eval_samples", "description", "name", "cf"}


@dataclass
class TrainOptions:
    """What ``train`` needs besides the recipe (the recipe comes with ``--recipe``/``--set`` applied)."""

    data: Path = option(help="a folder written by `llmrec prepare`", parse=Path)
    out: Path = option(help="adapter folder (written whole or not at all)", parse=Path)
    recipe: Recipe = option(default_factory=Recipe, cli=False)
    resume: bool = option(False, "continue from the newest checkpoint in OUT.checkpoints")
    overwrite: bool = option(False, "replace an existing --out and old checkpoints")
    keep_checkpoints: bool = option(False, "keep OUT.checkpoints after success")
    # set by --tasks: a task the user named must train, or the run fails; the recipe's tasks are
    # trained where the data has samples for them
    explicit_tasks: bool = option(False, cli=False)
    progress: bool = option(True, "no progress bars", flag="--no-progress")


def checkpoint_dir(out: Path) -> Path:
    """Where a run's checkpoints live until the adapter is written."""
    return out.parent / f"{out.name}.checkpoints"


def _run_record(options: TrainOptions, base: str, data_sha: str) -> dict[str, Any]:
    return {"base": base, "data_manifest_sha256": data_sha, "recipe": options.recipe.to_dict()}


def _check_resume(work: Path, record: dict[str, Any]) -> None:
    """A resumed run must be the same run: same base, data and training-defining recipe keys."""
    path = work / RUN_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    if old["base"] != record["base"] or old["data_manifest_sha256"] != record["data_manifest_sha256"]:
        raise LlmrecError(f"{work}: its checkpoints are from another base model or data; use a new --out")
    changed = [k for k, v in record["recipe"].items() if old["recipe"].get(k) != v and k not in _RESUMABLE_CHANGES]
    if changed:
        was = " ".join(f"--set {k}={json.dumps(old['recipe'].get(k))}" for k in changed)
        raise LlmrecError(f"{work}: cannot resume with a changed {', '.join(changed)}; use a new --out, or resume "
                          f"with what it was: {was}")  # fmt: skip
    # a run file from before init_adapter was recorded has no key: nothing to compare
    if old.get("init_adapter_sha256", record.get("init_adapter_sha256")) != record.get("init_adapter_sha256"):
        raise LlmrecError(f"{work}: its run started from other init_adapter weights than those there now; use a "
                          "new --out")  # fmt: skip


def _cast_adapter(folder: Path, dtype_name: str) -> None:
    """Re-save the adapter weights in ``dtype_name`` (the shipped adapter uses bf16 to halve its size)."""
    if dtype_name == "fp32":
        return
    import torch
    from safetensors.torch import load_file, save_file

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    path = folder / "adapter_model.safetensors"
    tensors = {k: v.to(dtype) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


@dataclass
class _Run:
    """What a run is: where it writes, what it trains on, and where it resumes from."""

    out: Path
    work: Path
    base_name: str
    prepared: dict[str, Any]  # the data folder's manifest
    data_sha: str
    record: dict[str, Any]
    resume_from: str | None
    init: dict[str, Any] | None = None  # the adapter the LoRA starts from (recipe init_adapter)


def _start_run(options: TrainOptions) -> _Run:
    """Check the data, the output and the checkpoints before anything heavy is loaded."""
    out = Path(options.out)
    manifest = prepared.read_manifest(options.data)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise LlmrecError(f"{out}: exists and is not empty; pass --overwrite to replace it")
    work = checkpoint_dir(out)
    base_name = options.recipe.base or EMBEDDED_MODEL
    data_sha = sha256_file(prepared.manifest_path(options.data))
    record = _run_record(options, base_name, data_sha)

    init = None
    if (folder := init_adapter_dir(options.recipe)) is not None:
        init = check_init_adapter(folder, options.recipe, base_name, manifest.get("templates") or {})
        record["init_adapter_sha256"] = init["sha256"]

    from transformers.trainer_utils import get_last_checkpoint

    resume_from = None
    if options.resume:
        if not work.is_dir() or (resume_from := get_last_checkpoint(str(work))) is None:
            raise LlmrecError(f"{work}: no checkpoint to resume from; run without --resume")
        _check_resume(work, record)
    elif work.is_dir() and any(work.glob("checkpoint-*")) and not options.overwrite:
        raise LlmrecError(f"{work}: holds checkpoints of an earlier run; pass --resume or --overwrite")
    return _Run(out, work, base_name, manifest, data_sha, record, resume_from, init)


def _sft_config(recipe: Recipe, work: Path, precision: str, cuda: bool, evaluating: bool, progress: bool):
    """TRL's ``SFTConfig`` for a recipe: completion-only loss, every default TRL 1.x would choose said."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(work),
        completion_only_loss=True,
        max_length=recipe.max_length,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.batch_size * 2,
        gradient_accumulation_steps=recipe.grad_accum,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup if recipe.warmup < 1 else int(recipe.warmup),
        weight_decay=recipe.weight_decay,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps or -1,
        # TRL 1.x defaults bf16=True, which fails on CPU: always say what precision to use.
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        # Always said: TRL 1.x defaults it to True (recompute activations, ~1/3 more compute).
        **{_checkpointing_arg(SFTConfig): recipe.gradient_checkpointing},
        eval_strategy="steps" if evaluating else "no",
        eval_steps=recipe.eval_steps or None,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit or None,
        load_best_model_at_end=evaluating and recipe.early_stopping_patience > 0,
        metric_for_best_model="eval_loss" if evaluating else None,
        greater_is_better=False if evaluating else None,
        logging_steps=recipe.logging_steps,
        seed=recipe.seed,
        data_seed=recipe.seed,
        train_sampling_strategy="group_by_length" if recipe.group_by_length else "random",
        report_to="none",
        disable_tqdm=not progress,
        dataloader_pin_memory=cuda,
        ddp_find_unused_parameters=False,
        # the main process fits the collaborative model after the LoRA steps while the others
        # wait (minutes for SASRec on a CPU): the 30-minute default could end a finished run
        ddp_timeout=DDP_TIMEOUT_S,
    )


def _checkpointing_arg(config_class) -> str:
    """transformers 5.24 renamed ``gradient_checkpointing`` to ``activation_checkpointing`` (the old
    name warns, and still mirrors the new one for TRL, which reads it); older 5.x know only the old."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _build_trainer(options: TrainOptions, run: _Run, splits: dict[str, Any], valid: dict[str, Any],
                   callbacks: list | None):  # fmt: skip
    """The SFTTrainer over the task mixture; returns it with the precision, the samples per step
    and the time-limit callback (None without ``max_minutes``)."""
    import torch
    from accelerate import PartialState
    from datasets import concatenate_datasets
    from transformers import EarlyStoppingCallback

    from llmrec.environment import cpu_bf16
    from llmrec.training.tokens import cache_key, tokenized
    from llmrec.training.trainer import time_limit, trainer_class

    recipe = options.recipe
    cuda = torch.cuda.is_available()
    precision = resolve_precision(recipe, cuda, torch.cuda.is_bf16_supported() if cuda else cpu_bf16())
    evaluating = bool(recipe.eval_steps) and bool(valid)
    # Built before anything asks for the process count: TrainingArguments sets up the process
    # group (world size, rank) when launched by accelerate/torchrun.
    config = _sft_config(recipe, run.work, precision, cuda, evaluating, options.progress)
    state = PartialState()
    per_step = recipe.batch_size * recipe.grad_accum * state.num_processes
    limit = recipe.max_steps * per_step if recipe.max_steps else None
    train_rows = mix(splits, recipe.tasks, recipe.seed, limit)
    model, tokenizer = load_base(recipe.base, recipe, precision, cuda)
    check_tokenizer(tokenizer, run.prepared, run.base_name)
    peft_config = lora_config(recipe)
    if run.init is not None:  # its LoRA, trainable, instead of a new one
        model, peft_config = start_from_adapter(model, init_adapter_dir(recipe), recipe.lora_dropout), None
    key = cache_key(tokenizer, run.data_sha, recipe.tasks, recipe.seed, limit)
    train_rows = tokenized(train_rows, tokenizer, options.data, key, write=state.is_main_process)
    if state.is_main_process:  # only now: a bad base model or data leaves no checkpoint folder behind
        if run.work.is_dir() and not options.resume:
            shutil.rmtree(run.work)
        run.work.mkdir(parents=True, exist_ok=True)
        (run.work / RUN_FILE).write_text(json.dumps(run.record, indent=2) + "\n")
    state.wait_for_everyone()
    cbs = list(callbacks or [])
    if evaluating and recipe.early_stopping_patience:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience))
    limit = time_limit(recipe.max_minutes) if recipe.max_minutes else None
    if limit is not None:
        cbs.append(limit)
    trainer = trainer_class()(
        model=model, args=config, train_dataset=train_rows,
        eval_dataset=concatenate_datasets(list(valid.values())) if evaluating else None,
        processing_class=tokenizer, peft_config=peft_config, callbacks=cbs,
    )  # fmt: skip
    _logs_to_stderr(trainer, options.progress)
    return trainer, precision, per_step, limit


def _logs_to_stderr(trainer, progress: bool) -> None:
    """Keep stdout for llmrec's summary: per-step log dicts go to stderr beside the progress bar,
    and nowhere with --no-progress (transformers prints them to stdout either way)."""
    import sys

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StderrProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                self.training_bar.write(str({k: v for k, v in logs.items() if k != "total_flos"}), file=sys.stderr)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(StderrProgress)


def _valid_metrics(trainer, valid: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Loss and token accuracy on each task's valid rows."""
    metrics = {}
    for task, rows in valid.items():
        m = trainer.evaluate(rows, metric_key_prefix=f"eval_{task}")
        metrics[task] = {
            "samples": len(rows),
            "loss": float(m[f"eval_{task}_loss"]),
            "mean_token_accuracy": float(m.get("eval_mean_token_accuracy", float("nan"))),
        }
    return metrics


def train(options: TrainOptions, callbacks: list | None = None) -> dict[str, Any]:
    """Train an adapter; returns its manifest (also written to ``out/llmrec_adapter.json``).

    Args:
        options: Data, output folder, recipe and run switches.
        callbacks: Extra ``transformers.TrainerCallback`` objects (e.g. for logging).
    """
    from accelerate import PartialState

    started = time.perf_counter()
    recipe = options.recipe
    run = _start_run(options)
    if recipe.cf != "none" and not run.prepared.get("splits", {}).get("valid"):
        # found before the LoRA steps, not after them
        raise LlmrecError(f"{options.data}: no valid events to tune the collaborative model on (cf: {recipe.cf}); "
                          "--cf none trains without one")  # fmt: skip
    splits, dropped = task_splits(options.data, options.recipe.tasks, options.explicit_tasks, options.progress)
    if dropped:
        recipe = options.recipe = recipe.replace(tasks={t: w for t, w in recipe.tasks.items() if t in splits})
    valid = valid_sets(splits, recipe.max_eval_samples, recipe.seed)
    trainer, precision, per_step, limit = _build_trainer(options, run, splits, valid, callbacks)
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    metrics = _valid_metrics(trainer, valid)
    state = PartialState()
    state.wait_for_everyone()
    stats = run_stats(trainer, result, recipe, run, precision, per_step, started)
    manifest = build_manifest(recipe, run, metrics, stats)
    manifest["tasks"] = {"trained": list(recipe.tasks), "dropped": dropped}
    manifest["training"]["time_limit_hit"] = bool(limit is not None and limit.hit)
    if run.init is not None:  # what it learned of the tasks this run does not train, it still knows
        manifest["templates"] = {**{t: v for t, v in run.init["templates"].items() if t not in manifest["templates"]},
                                 **manifest["templates"]}  # fmt: skip
    manifest["init_adapter"] = {k: v for k, v in run.init.items() if k != "templates"} if run.init else None
    if state.is_main_process:
        guide = fit_guide(options.data, recipe.cf, options.progress, recipe.cf_max_mb)
        manifest["cf"] = {"model": guide.name, **guide.report} if guide is not None else None
        _write_adapter(trainer, run.out, manifest, options, guide)
    state.wait_for_everyone()
    return manifest


def _write_adapter(trainer, out: Path, manifest: dict[str, Any], options: TrainOptions, guide=None) -> None:
    """Save the PEFT adapter, collaborative model, manifest, recipe and card into a temporary
    folder, then rename it."""
    with atomic_dir(out, overwrite=True) as tmp:
        if guide is not None:
            manifest["cf"]["bytes"] = guide.save(tmp)
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.save_pretrained(str(tmp))
        _cast_adapter(tmp, options.recipe.adapter_dtype)
        config_path = tmp / "adapter_config.json"
        config = json.loads(config_path.read_text())
        # The hub id when there is one, so PEFT/vLLM users elsewhere can load the base by name.
        config["base_model_name_or_path"] = manifest["base_model"]["hub_id"] or manifest["base_model"]["name"]
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if problems := servability_problems(config):
            raise LlmrecError(f"{out}: vLLM could not serve this adapter: {'; '.join(problems)}")
        manifest["adapter_bytes"] = (tmp / "adapter_model.safetensors").stat().st_size
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        (tmp / RECIPE_FILE).write_text(yaml.safe_dump(options.recipe.to_dict(), sort_keys=False))
        (tmp / CARD).write_text(model_card(manifest))
    if not options.keep_checkpoints:
        shutil.rmtree(checkpoint_dir(out), ignore_errors=True)

