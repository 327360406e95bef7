"""What this machine is, for bug reports and for choosing a precision: library versions, devices,
bf16 support, the cache. Plain Python; torch is imported only when asked about devices."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "vllm", "bitsandbytes")


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.split(":")[0].strip() == name:
            return line.partition(":")[2].strip()
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags Linux reports (empty where there is no /proc/cpuinfo)."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_bf16(flags: set[str] | None = None) -> str | None:
    """The CPU's native bf16 instructions (``amx_bf16``, ``avx512_bf16``), or None without them."""
    flags = cpu_flags() if flags is None else flags
    found = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return ", ".join(found) or None


def library_versions() -> dict[str, str | None]:
    """Installed versions of llmrec's stack; None for what is not installed."""
    out: dict[str, str | None] = {"llmrec": _version("llmrec"), "python": platform.python_version()}
    for name in LIBRARIES:
        out[name] = _version(name)
    return out


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def devices() -> list[dict[str, Any]]:
    """The CPU and every visible CUDA device, with whether it computes in bf16."""
    import torch

    out = [{"device": "cpu", "name": cpu_name(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "bf16": cpu_bf16()}]  # fmt: skip
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(i)
        out.append({"device": f"cuda:{i}", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                    "bf16": "yes" if torch.cuda.is_bf16_supported() else None})  # fmt: skip
    return out


def report() -> dict[str, Any]:
    """Everything ``llmrec env`` prints."""
    from llmrec.models import cache_dir, embedded_converted

    return {
        "versions": library_versions(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "devices": devices(),
        "cache_dir": str(cache_dir()),
        "embedded_model_converted": embedded_converted(),
        "offline": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if k in os.environ},
    }


def format_report(info: dict[str, Any]) -> str:
    """The report as the block users paste into a bug report."""
    lines = ["llmrec environment", ""]
    lines += [f"- {name}: {v or 'not installed'}" for name, v in info["versions"].items()]
    lines += [f"- platform: {info['platform']}", f"- python executable: {info['executable']}"]
    for d in info["devices"]:
        extra = ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("device", "name", "bf16"))
        lines.append(f"- {d['device']}: {d['name']} ({extra}); bf16: {d['bf16'] or 'no'}")
    lines.append(f"- cache dir: {info['cache_dir']}")
    lines.append(f"- embedded model converted: {'yes' if info['embedded_model_converted'] else 'no (on first use)'}")
    if info["offline"]:
        lines.append("- " + ", ".join(f"{k}={v}" for k, v in info["offline"].items()))
    return "\n".join(lines)


# Deprecations raised inside the libraries we call (not by llmrec's own calls), printed on every
# run: peft reads `is_gradient_checkpointing`, TRL passes `gradient_checkpointing`.
KNOWN_DEPRECATIONS = (
    r"`is_gradient_checkpointing` is deprecated",
    r"`gradient_checkpointing` is deprecated",
    r"`gradient_checkpointing_kwargs` is deprecated",
)


def silence_known_deprecations() -> None:
    """Hide the libraries' own FutureWarnings listed in ``KNOWN_DEPRECATIONS`` (the CLI calls this)."""
    import warnings

    for message in KNOWN_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
