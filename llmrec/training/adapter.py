"""An llmrec adapter folder: a standard PEFT adapter plus ``llmrec_adapter.json`` and a model card.

Plain data only (no torch): reading a manifest, finding the shipped adapter, writing the card.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError

MANIFEST = "llmrec_adapter.json"
RECIPE_FILE = "recipe.yaml"
CARD = "README.md"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def shipped_adapter_dir() -> Path:
    """The adapter shipped inside the package (trained on ml-latest-small with finetune/shipped.yaml)."""
    folder = Path(str(importlib.resources.files("llmrec.embedded") / "adapter"))
    if not (folder / MANIFEST).is_file():
        raise LlmrecError(f"{folder}: the shipped adapter is missing from this install; reinstall llmrec")
    return folder


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The llmrec manifest of an adapter folder; a one-line error names what is missing."""
    folder = Path(folder)
    for name in (*PEFT_FILES, MANIFEST):
        if not (folder / name).is_file():
            raise LlmrecError(f"{folder}: not an llmrec adapter (no {name})")
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LlmrecError(f"{folder / MANIFEST}: line {exc.lineno}: not valid JSON ({exc.msg})") from None


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(manifest: dict[str, Any]) -> str:
    """A README.md for the adapter folder, from its manifest."""
    base = manifest["base_model"]
    data = manifest["data"]
    recipe = manifest["recipe"]
    run = manifest["training"]
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {base['hub_id'] or base['name']}",
        "tags: [llmrec, lora, recommendation]",
        "---",
        "",
        f"# llmrec adapter: {recipe['name']} on {data['name']}",
        "",
        (
            f"A LoRA adapter (rank {recipe['lora_r']}, alpha {recipe['lora_alpha']}) for `{base['name']}`, "
            f"trained by llmrec {manifest['llmrec_version']} with the recipe `{recipe['name']}` on the tasks "
            f"{', '.join(f'{t} (weight {w:g})' for t, w in recipe['tasks'].items())}."
        ),
        "",
        "## Use",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base["hub_id"] or base["name"]}")',
        'model = PeftModel.from_pretrained(base, "PATH/TO/THIS/FOLDER")',
        "```",
        "",
        "Prompts must be rendered with the templates listed below (llmrec does this for you).",
        "",
        "## Training data",
        "",
        (
            f"- data: `{data['name']}` ({data['source']}), catalogue hash `{data['catalog_hash'][:16]}`, "
            f"data manifest sha256 `{data['manifest_sha256'][:16]}`"
        ),
        f"- train samples seen: {run['samples']:,} in {run['steps']:,} steps, {run['tokens']:,} tokens",
        *([f"- stopped by the recipe's time limit (max_minutes {recipe.get('max_minutes', 0):g}) before its "
           f"last step; the weights are those of {run.get('best_checkpoint') or 'the last step'}"]
          if run.get("time_limit_hit") else []),
        *([f"- started from the LoRA of the adapter `{init['folder']}` (trained on {init['data']}, "
           f"{'unknown' if init['samples'] is None else format(init['samples'], ',')} samples; weights sha256 "
           f"`{init['sha256'][:16]}`), not from a new LoRA"]
          if (init := manifest.get("init_adapter")) else []),
        "- templates: " + ", ".join(f"{t} v{v['version']}" for t, v in manifest["templates"].items()),
        *[f"- not trained: {task} ({why})" for task, why in manifest.get("tasks", {}).get("dropped", {}).items()],
        "",
        "## Valid-split metrics",
        "",
        "| task | samples | loss | mean token accuracy |",
        "|---|---|---|---|",
    ]
    for task, m in manifest["metrics"]["valid"].items():
        lines.append(f"| {task} | {m['samples']} | {_fmt(m['loss'])} | {_fmt(m['mean_token_accuracy'])} |")
    if cf := manifest.get("cf"):
        lines += [
            "",
            "## Collaborative model (`cf/`)",
            "",
            f"- {cf['model']} ({cf['choice']} choice), fitted on the train split, setting {cf['setting']}: "
            f"valid NDCG@10 {_fmt(cf['valid_ndcg@10'])} over {cf['valid_users']:,} users",
            "- decoding fuses it with the LLM once `llmrec tune` has chosen the weights on the valid split "
            "(they are then in `llmrec_adapter.json`, `fusion`)",
        ]
    lines += [
        "",
        "## Training run",
        "",
        f"- device: {run['device']}, precision {run['precision']}, {run['processes']} process(es)",
        (
            f"- {run['seconds']:.0f} s"
            + (f" for the {run['steps_this_part']} steps after resuming from {run['resumed_from']}"
               if run.get("resumed_from") and "steps_this_part" in run else "")
            + f", {run['samples_per_second']:.2f} samples/s, "
            f"{run['tokens_per_second']:.0f} tokens/s, peak memory {run['peak_memory_mib']:,} MiB"
        ),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in manifest["versions"].items()),
        "",
        "The recipe is in `recipe.yaml`; the full record in `llmrec_adapter.json`.",
        "",
    ]
    return "\n".join(lines)
