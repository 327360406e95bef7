"""``llmrec evaluate-merge``: one report from the folders of ``evaluate`` shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.evaluation.report import (
    PREDICTIONS,
    is_evaluation,
    read_config,
    read_predictions,
    write_evaluation,
)
from llmrec.files import atomic_dir


def merge(folders: list[Path], out: Path, overwrite: bool = False, common_users: bool = False) -> dict[str, Any]:
    """One report from shard folders: their predictions concatenated, every metric recomputed.

    With ``common_users``, only the users every system was scored on (next item) are kept, so runs
    over different numbers of users (baselines over all, llmrec over a sample) compare like for like.
    """
    if not folders:
        raise LlmrecError("evaluate-merge: give at least one shard folder")
    records, configs = [], []
    for f in folders:
        if not is_evaluation(f):
            raise LlmrecError(f"{f}: not an evaluate output (no {PREDICTIONS})")
        records += read_predictions(f)
        configs.append(read_config(f))
    base = configs[0]["config"]
    for c in configs[1:]:
        same = {k: c["config"][k] for k in ("model", "data", "split", "k", "seed", *(() if common_users else ("users",)))}
        if same != {k: base[k] for k in same}:
            raise LlmrecError("evaluate-merge: the shards were run with different settings")
    for f, c in zip(folders, configs, strict=True):
        if c["data_manifest"].get("hashes") != configs[0]["data_manifest"].get("hashes"):
            other = f"{folders[0]} (catalogue/interactions hash)"
            raise LlmrecError(f"evaluate-merge: {f} was split from other data than {other}")
    seen: set[tuple] = set()
    for r in records:
        key = (r["system"], r["task"], r["user"], r.get("item"))
        if key in seen:
            raise LlmrecError(f"evaluate-merge: {r['system']} {r['task']} for user {r['user']} is in two shards")
        seen.add(key)
    if common_users:
        scored: dict[str, set[str]] = {}
        for r in records:
            if r["task"] == "next_item":
                scored.setdefault(r["system"], set()).add(r["user"])
        keep = set.intersection(*scored.values()) if scored else set()
        if not keep:
            raise LlmrecError("evaluate-merge --common-users: no user was scored by every system")
        records = [r for r in records if r["user"] in keep]
    config = {**base, "shard": [0, 1], "merged_from": [str(f) for f in folders],
              "baselines": sorted({b for c in configs for b in c["config"]["baselines"]}),
              "llmrec": any(c["config"].get("llmrec", True) for c in configs),
              "adapter": next((c["config"].get("adapter") for c in configs if c["config"].get("llmrec", True)), None),
              "tuning": {k: v for c in configs for k, v in c["config"].get("tuning", {}).items()},
              "users_evaluated": len({r["user"] for r in records}), "common_users": common_users}  # fmt: skip
    with atomic_dir(Path(out), overwrite) as tmp:
        return write_evaluation(tmp, records, config, configs[0]["data_manifest"])
