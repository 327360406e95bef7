"""Training recipes: a typed config loaded from ``finetune/NAME.yaml``, overridable by flags.

Precedence is defaults < recipe file < command-line flags. An unknown key is an error (a typo
must not train silently with a default). Plain data only: nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmrec.collab.guide import CHOICES as CF_CHOICES
from llmrec.errors import LlmrecError
from llmrec.prompting.templates import TASKS

# vLLM 0.33 serves LoRA ranks up to --max-lora-rank from this set, and refuses DoRA, biases and
# modules_to_save (full copies of lm_head/embeddings); recipes are held to what it can serve.
VLLM_LORA_RANKS = (8, 16, 32, 64)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ADAPTER_DTYPES = ("fp32", "bf16", "fp16")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
_UNSERVABLE_TARGETS = {"lm_head", "embed_tokens", "wte", "word_embeddings"}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class Recipe:
    """How an adapter is trained. Every field may be set in a recipe file or with ``--set KEY=VALUE``."""

    name: str = field(default="custom", metadata=_help("recipe name, recorded in the adapter manifest"))
    description: str = field(default="", metadata=_help("one line on what the recipe is for"))
    base: str | None = field(
        default=None, metadata=_help("base model: HF id or local folder; null = embedded SmolLM2-135M-Instruct")
    )
    tasks: dict[str, float] = field(
        default_factory=lambda: {t: 1.0 for t in TASKS},
        metadata=_help("task -> weight: passes over that task's train samples per epoch (0.5 = a random half)"),
    )
    init_adapter: str | None = field(default=None, metadata=_help(
        "start from this llmrec adapter's LoRA weights instead of a new LoRA: a folder, or 'shipped' (the adapter "
        "in the package), to carry what it learned to new data; its base model, LoRA rank and alpha (and "
        "target modules when listed) and the templates of the trained tasks must be the run's; null = a new LoRA"))  # fmt: skip
    lora_r: int = field(default=8, metadata=_help(f"LoRA rank, one of {VLLM_LORA_RANKS} (what vLLM serves)"))
    lora_alpha: int = field(default=16, metadata=_help("LoRA scaling numerator (scale = alpha / r)"))
    lora_dropout: float = field(default=0.05, metadata=_help(
        "dropout on the LoRA input; on a CPU its random masks take over a quarter of a step (eval/RESULTS.md), and "
        "a run that sees each sample once has little to regularise: the quick recipe has 0"))  # fmt: skip
    target_modules: list[str] | str = field(
        default="all-linear", metadata=_help("module names to adapt, or 'all-linear' (every linear but lm_head)")
    )
    load_in_4bit: bool = field(default=False, metadata=_help("QLoRA: NF4 4-bit base weights (CUDA + bitsandbytes)"))
    precision: str = field(
        default="auto",
        metadata=_help("auto = bf16 where the device has it (GPU; CPU with AVX-512 BF16/AMX), else fp16 on GPU, fp32 on CPU"),
    )
    adapter_dtype: str = field(
        default="fp32", metadata=_help("dtype the adapter weights are saved in (bf16 halves the file)")
    )
    learning_rate: float = field(default=2e-4, metadata=_help("peak learning rate"))
    lr_scheduler: str = field(default="cosine", metadata=_help(f"one of {SCHEDULERS}"))
    warmup: float = field(default=0.05, metadata=_help("warmup: a fraction of the steps if < 1, else a step count"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    epochs: float = field(default=1.0, metadata=_help("passes over the mixed training set (ignored if max_steps > 0)"))
    max_steps: int = field(default=0, metadata=_help("optimizer steps; 0 = run `epochs`"))
    max_minutes: float = field(default=0.0, metadata=_help(
        "stop the training loop after this many wall-clock minutes (evaluations and saves count; --resume "
        "starts the clock again), then save, evaluate and write the adapter as a finished run does (the "
        "schedule is not shortened: a cut run ends at a higher learning rate); 0 = no limit"))  # fmt: skip
    batch_size: int = field(default=4, metadata=_help("samples per device per micro-batch"))
    grad_accum: int = field(default=1, metadata=_help("micro-batches per optimizer step"))
    # Prompts are cut to prepare's --max-length (512 by default); this only bounds prompt + answer.
    max_length: int = field(default=640, metadata=_help("longest training sequence in tokens; longer ones are cut"))
    gradient_checkpointing: bool = field(default=False, metadata=_help("recompute activations to save memory"))
    group_by_length: bool = field(default=True, metadata=_help("batch samples of similar length (less padding)"))
    eval_steps: int = field(default=0, metadata=_help("valid loss every N steps; 0 = only at the end"))
    save_steps: int = field(default=50, metadata=_help("checkpoint every N steps (what --resume continues from)"))
    save_total_limit: int = field(default=2, metadata=_help("checkpoints kept on disk"))
    max_eval_samples: int = field(default=128, metadata=_help("valid samples per task (0 = all)"))
    early_stopping_patience: int = field(
        default=0, metadata=_help("stop after N evaluations without a better valid loss; 0 = off (needs eval_steps)")
    )
    cf: str = field(default="auto", metadata=_help(
        "collaborative model fitted on the train split and saved in the adapter (cf/): auto (the better of sasrec "
        "and itemknn on valid NDCG@10), sasrec, itemknn, popularity, none"))  # fmt: skip
    cf_max_mb: float = field(default=0.0, metadata=_help(
        "largest collaborative model weights (MB) the adapter may carry: settings above it are not tuned; 0 = no "
        "limit (the shipped recipe sets one so that the adapter stays within 10 MB)"))  # fmt: skip
    logging_steps: int = field(default=10, metadata=_help("log loss every N steps"))
    seed: int = field(default=0, metadata=_help("seed of sampling, shuffling and LoRA init"))

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise LlmrecError on a value that cannot train or cannot be served."""
        if not isinstance(self.tasks, dict) or not self.tasks:
            raise LlmrecError("tasks must map task names to weights, e.g. {next_item: 1.0}")
        for task, weight in self.tasks.items():
            if task not in TASKS:
                raise LlmrecError(f"tasks: unknown task '{task}' (known: {', '.join(TASKS)})")
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
                raise LlmrecError(f"tasks.{task}: weight must be a number > 0, got {weight!r}")
        if self.init_adapter is not None and (not isinstance(self.init_adapter, str) or not self.init_adapter):
            raise LlmrecError(f"init_adapter must be an adapter folder, 'shipped' or null, got {self.init_adapter!r}")
        if self.cf not in CF_CHOICES:
            raise LlmrecError(f"cf={self.cf!r}: expected one of {', '.join(CF_CHOICES)}")
        if self.lora_r not in VLLM_LORA_RANKS:
            raise LlmrecError(
                f"lora_r={self.lora_r}: vLLM serves LoRA ranks {', '.join(map(str, VLLM_LORA_RANKS))} only"
            )
        targets = [self.target_modules] if isinstance(self.target_modules, str) else list(self.target_modules)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise LlmrecError("target_modules must be 'all-linear' or a list of module names")
        if bad := _UNSERVABLE_TARGETS & set(targets):
            raise LlmrecError(f"target_modules: vLLM cannot serve LoRA on {', '.join(sorted(bad))}")
        choices = {"precision": PRECISIONS, "adapter_dtype": ADAPTER_DTYPES, "lr_scheduler": SCHEDULERS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise LlmrecError(f"{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        positive = ("lora_alpha", "learning_rate", "batch_size", "grad_accum", "max_length", "save_steps")
        for key in positive:
            if not getattr(self, key) > 0:
                raise LlmrecError(f"{key} must be > 0, got {getattr(self, key)!r}")
        non_negative = ("warmup", "weight_decay", "max_steps", "max_minutes", "eval_steps", "max_eval_samples",
                        "cf_max_mb")
        for key in non_negative + ("early_stopping_patience", "save_total_limit", "epochs"):
            if getattr(self, key) < 0:
                raise LlmrecError(f"{key} must be >= 0, got {getattr(self, key)!r}")
        if not 0 <= self.lora_dropout < 1:
            raise LlmrecError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.max_steps == 0 and self.epochs == 0:
            raise LlmrecError("set max_steps > 0 or epochs > 0")
        if self.early_stopping_patience and not self.eval_steps:
            raise LlmrecError("early_stopping_patience needs eval_steps > 0")
        if self.eval_steps and self.save_steps % self.eval_steps:
            # the best checkpoint can only be restored if every save falls on an evaluation
            raise LlmrecError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps")

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data, in field order (what the adapter manifest records)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Recipe:
        """A checked copy with ``changes`` applied; unknown keys are errors."""
        return from_mapping({**self.to_dict(), **changes}, f"recipe '{self.name}'")


def field_names() -> list[str]:
    """The keys a recipe may set."""
    return [f.name for f in dataclasses.fields(Recipe)]


# a finite decimal number, exponent optional
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(key: str, value: Any, where: str) -> Any:
    """Check a YAML value against the field's type; ints are accepted for floats."""
    kind = {f.name: f.type for f in dataclasses.fields(Recipe)}[key]
    if kind.startswith("float") and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(kind)
    if expected is None or value is None and "None" in kind:
        return value
    if isinstance(value, bool) and kind != "bool" or not isinstance(value, expected):
        raise LlmrecError(f"{where}: {key}: expected {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def from_mapping(values: dict[str, Any], where: str) -> Recipe:
    """Build a recipe from a mapping; an unknown key names the closest known one."""
    import difflib

    if not isinstance(values, dict):
        raise LlmrecError(f"{where}: a recipe is a mapping of keys to values")
    known = field_names()
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise LlmrecError(f"{where}: unknown key '{key}'{hint}")
    checked = {k: _coerce(k, v, where) for k, v in values.items()}
    try:
        return Recipe(**checked)
    except LlmrecError as exc:
        raise LlmrecError(f"{where}: {exc}") from None


def shipped_recipes() -> dict[str, Path]:
    """Recipe name -> file for the recipes shipped in ``finetune/`` (package ``llmrec.recipes``)."""
    folder = importlib.resources.files("llmrec.recipes")
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def load_recipe(source: str | Path | None) -> Recipe:
    """A recipe from a file path or a shipped recipe name (``quick``); None = the defaults."""
    if source is None:
        return Recipe()
    path = Path(source)
    if not path.is_file():
        shipped = shipped_recipes()
        if str(source) not in shipped:
            names = ", ".join(sorted(shipped))
            raise LlmrecError(f"{source}: no such recipe file or shipped recipe (shipped: {names})")
        path = shipped[str(source)]
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise LlmrecError(f"{path}:{line} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    values = values or {}
    values.setdefault("name", path.stem)
    return from_mapping(values, str(path))


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from ``--set``; the value is read as YAML (``lora_r=16``, ``tasks={yes_no: 1}``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise LlmrecError(f"--set {text!r}: expected KEY=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise LlmrecError(f"--set {text!r}: the value is not valid YAML") from None
    return key.strip(), value


def servability_problems(adapter_config: dict[str, Any]) -> list[str]:
    """Why vLLM 0.33 could not serve a PEFT ``adapter_config.json``; an empty list means it can."""
    problems = []
    if adapter_config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {adapter_config.get('peft_type')!r}, not LORA")
    if adapter_config.get("r") not in VLLM_LORA_RANKS:
        problems.append(f"rank r={adapter_config.get('r')} not in {VLLM_LORA_RANKS}")
    if adapter_config.get("bias", "none") != "none":
        problems.append(f"bias={adapter_config.get('bias')!r} (must be 'none')")
    if adapter_config.get("use_dora"):
        problems.append("DoRA (use_dora=true)")
    if adapter_config.get("modules_to_save"):
        problems.append(f"modules_to_save={adapter_config['modules_to_save']} (full module copies)")
    if adapter_config.get("trainable_token_indices"):
        problems.append("trainable_token_indices (new token embeddings)")
    targets = adapter_config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    if bad := _UNSERVABLE_TARGETS & set(targets):
        problems.append(f"LoRA on {', '.join(sorted(bad))}")
    return problems
