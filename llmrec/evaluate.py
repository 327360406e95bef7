"""``llmrec evaluate``: llmrec and classical baselines on the same split and users, one report.

Per user, the held-out event of ``split`` is the target and every earlier event the history.
llmrec returns its top-K from the whole catalogue (history excluded); each baseline scores every
item. yes/no and candidate ranking use the prepared samples of that split. Baselines are fitted
on the train events of all users; with ``split="test"`` their settings are first chosen on the
valid split (a short grid, written into the report); with ``split="valid"`` they keep defaults.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.atomic import atomic_dir, check_writable
from llmrec.baselines import BASELINES, make
from llmrec.errors import LlmrecError
from llmrec.metrics import rank_from_scores, rank_in_list, ranking_metrics
from llmrec.report import PREDICTIONS, read_predictions, write_report

EVAL_TASKS = ("next_item", "yes_no", "rank")
# Short grids on the valid split (metric: NDCG@10). SASRec's search is over epochs (early stopping).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{"recent": 0}, {"recent": 20}],
    "itemknn": [{"neighbours": n, "history": h} for n in (50, 200) for h in (0, 20)],
    "sasrec": [{"epochs": 200}],
}


@dataclass
class EvaluateOptions:
    """What ``evaluate`` runs; the CLI fills it from flags."""

    out: Path
    model: str | None = None
    data: str | None = None
    split: str = "test"
    users: int = 0  # 0 = every user with an event in the split
    k: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    tasks: list[str] = field(default_factory=lambda: list(EVAL_TASKS))
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    shard: tuple[int, int] = (0, 1)
    explain_users: int = 10
    seed: int = 0
    batch_size: int | None = None  # None: 8 on a GPU, 1 on CPU (batching gains ~10% there, for 4x the memory)
    llmrec: bool = True  # False: baselines only (to merge with llmrec shards run without baselines)
    backend: str = "hf"
    device: str | None = None
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.k or any(k <= 0 for k in self.k):
            raise LlmrecError(f"--k: every K must be > 0, got {self.k}")
        self.k = sorted(set(self.k))
        for task in self.tasks:
            if task not in EVAL_TASKS:
                raise LlmrecError(f"--tasks: unknown task '{task}' (known: {', '.join(EVAL_TASKS)})")
        for name in self.baselines:
            if name not in BASELINES:
                raise LlmrecError(f"--baselines: unknown baseline '{name}' (known: {', '.join(BASELINES)})")
        if self.split not in ("valid", "test"):
            raise LlmrecError(f"--split must be valid or test, got '{self.split}'")
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise LlmrecError(f"--shard {i}/{n}: expected i/n with 0 <= i < n")
        if self.users < 0:
            raise LlmrecError("--users must be >= 0")
        if not self.llmrec and not self.baselines:
            raise LlmrecError("--no-llmrec with no --baselines: nothing to evaluate")


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match:
        raise LlmrecError(f"--shard {text!r}: expected i/n, e.g. 0/2")
    return int(match.group(1)), int(match.group(2))


def prepared_folder(data: str | None, progress: bool, cache: Path | None = None) -> Path:
    """A prepared folder for ``data``: itself if it is one, else prepared once into the cache.

    The cached folder is named after the data and :func:`prepare_key`, so a change to the input
    files or to the code that prepares them prepares afresh instead of reusing a stale split.
    """
    from llmrec import data as datasets_io
    from llmrec.models import cache_dir

    name = data or datasets_io.EMBEDDED
    if (Path(name) / "manifest.json").is_file():
        return Path(name)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(name).resolve()) if Path(name).exists() else name).strip("_")
    folder = (cache or cache_dir() / "prepared") / f"{slug}-{prepare_key(name)}"
    if not (folder / "manifest.json").is_file():
        from llmrec.prepare import PrepareOptions, prepare

        prepare(PrepareOptions(out=folder, data=name, overwrite=True, progress=progress))
    return folder


def prepare_key(name: str) -> str:
    """12 hex digits over what a default ``prepare`` of ``name`` depends on: llmrec's version, the
    source of prepare and its data/sample/prompt modules, the shipped templates, and each input
    file's path, size and modification time (``name`` may also be a packaged data set)."""
    from importlib import resources

    import llmrec
    from llmrec import data as datasets_io

    digest = hashlib.sha256(llmrec.__version__.encode())
    code = Path(llmrec.__file__).parent
    sources = [code / "prepare.py", code / "samples.py", code / "prompts.py", *sorted((code / "data").glob("*.py"))]
    sources += sorted(Path(str(resources.files("llmrec.templates"))).glob("*.yaml"))
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    path = datasets_io.named_path(name) or Path(name)
    inputs = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in inputs:
        stat = p.stat()
        digest.update(f"{p.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def select_users(interactions: pd.DataFrame, split: str, n: int, seed: int, shard: tuple[int, int]) -> list[str]:
    """Users with an event in ``split``: all, or ``n`` drawn with ``seed``; then this shard's part."""
    users = sorted(interactions.loc[interactions["split"] == split, "user_id"].astype(str).unique())
    if not users:
        raise LlmrecError(f"the {split} split is empty: no user has a held-out event")
    if n and n < len(users):
        users = sorted(np.random.default_rng(seed).choice(users, n, replace=False).tolist())
    return users[shard[0] :: shard[1]]


def sequences(interactions: pd.DataFrame, position: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per user: item positions in order with their split."""
    df = interactions.sort_values(["user_id", "seq"])
    out = {}
    for user, g in df.groupby(df["user_id"].astype(str), sort=False):
        out[user] = {"items": [position[str(i)] for i in g["item_id"]], "split": g["split"].tolist()}
    return out


def history_and_target(seq: dict[str, Any], split: str) -> tuple[list[int], int] | None:
    if split not in seq["split"]:
        return None
    at = seq["split"].index(split)
    return seq["items"][:at], seq["items"][at]


def tune(name: str, train: list[list[int]], n_items: int, valid: list[tuple[list[int], int]]):
    """Fit ``name`` for each setting of its grid; keep the best NDCG@10 on the valid pairs."""
    best, began = None, time.perf_counter()
    for setting in GRIDS[name]:
        model = make(name, **setting)
        if name == "sasrec":
            model.fit(train, n_items, validate=lambda m: _ndcg10(m, valid))  # early stopping on valid
        else:
            model.fit(train, n_items)
        value = _ndcg10(model, valid)
        if best is None or value > best[0]:
            chosen = {**setting, **({"epochs_run": model.epochs_run} if name == "sasrec" else {})}
            best = (value, model, {"setting": chosen, "valid_ndcg@10": round(value, 4)})
    return best[1], {**best[2], "tune_s": round(time.perf_counter() - began, 1)}


def _ndcg10(model, pairs: list[tuple[list[int], int]]) -> float:
    scores = model.score([h for h, _ in pairs])
    ranks = [rank_from_scores(scores[i], t, h) for i, (h, t) in enumerate(pairs)]
    return ranking_metrics(ranks, [10])["ndcg@10"]


def evaluate(options: EvaluateOptions) -> dict[str, Any]:
    """Run the evaluation into ``options.out``; returns the report."""
    from tqdm.auto import tqdm

    from llmrec.recommender import Recommender, adapter_manifest, load_data

    check_writable(Path(options.out), options.overwrite)
    folder = prepared_folder(options.data, options.progress)
    manifest = json.loads((folder / "manifest.json").read_text())
    rec, batch = None, 1  # the model is loaded only when llmrec is evaluated
    if options.llmrec:
        rec = Recommender.load(options.model, folder, options.backend, options.device)
        batch = options.batch_size or (8 if str(getattr(rec.backend, "device", "cpu")).startswith("cuda") else 1)
        rec.backend.batch_size = batch
        catalog, interactions = rec.catalog, rec.interactions
    else:
        catalog, interactions, _ = load_data(folder)
    item_ids = catalog["item_id"].astype(str).tolist()  # the Recommender's positions: same order
    position = {item: i for i, item in enumerate(item_ids)}
    seqs = sequences(interactions, position)
    users = select_users(interactions, options.split, options.users, options.seed, options.shard)
    pairs = {u: p for u in users if (p := history_and_target(seqs[u], options.split)) is not None}
    kmax = max(options.k)
    records: list[dict[str, Any]] = []
    catalogue = set(range(len(item_ids)))

    def add_ranking(system: str, user: str, items: list[int], history: list[int], rank: float, latency=None):
        banned = set(history)
        records.append({
            "system": system, "task": "next_item", "user": user, "rank": None if rank == float("inf") else rank,
            "items": [item_ids[i] for i in items],
            "valid": sum(1 for i in items if i in catalogue and i not in banned), "latency_s": latency,
        })  # fmt: skip

    model_name = str(options.model) if options.model else "shipped adapter"
    if rec is not None and "next_item" in options.tasks:
        order = list(pairs)
        for start in tqdm(range(0, len(order), batch), desc="llmrec next_item", disable=not options.progress):
            chunk = order[start : start + batch]
            began = time.perf_counter()
            out = rec.recommend_many([[rec.item_ids[i] for i in pairs[u][0]] for u in chunk], kmax)
            per_user = (time.perf_counter() - began) / len(chunk)
            for u, recs in zip(chunk, out):
                items = [rec.position[r.item_id] for r in recs]
                rank = rank_in_list(items, [r.score for r in recs], pairs[u][1])
                add_ranking("llmrec", u, items, pairs[u][0], rank, per_user)
        # the first explain_users of the whole selection, so shards explain the same users as one run
        everyone = select_users(interactions, options.split, options.users, options.seed, (0, 1))
        explain = set(everyone[: options.explain_users])
        for u in [u for u in order if u in explain]:
            top = next(r for r in records if r["system"] == "llmrec" and r["task"] == "next_item" and r["user"] == u)
            if top["items"]:
                e = rec.explain([rec.item_ids[i] for i in pairs[u][0]], top["items"][0])
                records.append({"system": "llmrec", "task": "explain", "user": u, "item": top["items"][0],
                                "grounded": e["grounded"], "text": e["text"]})  # fmt: skip

    samples = {t: _samples(folder, t, options.split, set(pairs)) for t in ("yes_no", "rank") if t in options.tasks}
    for row in samples.get("yes_no", []):
        row["pos"] = position[row["item"]]
    for row in samples.get("rank", []):
        row["cands"] = [position[c] for c in row["candidates"]]
    if rec is not None and "yes_no" in samples:
        _llm_yes_no(rec, samples["yes_no"], records)
    if rec is not None and "rank" in samples:
        _llm_rank(rec, samples["rank"], records)

    tuning = {}
    if options.baselines:
        train = [[i for i, s in zip(v["items"], v["split"]) if s == "train"] for v in seqs.values()]
        valid_pairs = [p for v in seqs.values() if (p := history_and_target(v, "valid")) is not None and p[0]]
        for name in tqdm(options.baselines, desc="baselines", disable=not options.progress):
            if options.split == "test":
                model, tuning[name] = tune(name, train, len(item_ids), valid_pairs)
            else:
                model = make(name).fit(train, len(item_ids))
            order = list(pairs)
            began = time.perf_counter()
            scores = model.score([pairs[u][0] for u in order])
            per_user = (time.perf_counter() - began) / max(1, len(order))
            for row, u in enumerate(order):
                history, target = pairs[u]
                s = scores[row].copy()
                s[history] = -np.inf
                top = np.argsort(-s, kind="stable")[:kmax].tolist()
                add_ranking(name, u, top, history, float(rank_from_scores(scores[row], target, history)), per_user)
            by_user = {u: scores[row] for row, u in enumerate(order)}
            for row in samples.get("yes_no", []):
                records.append({"system": name, "task": "yes_no", "user": row["user"], "item": row["item"],
                                "label": row["label"], "score": float(by_user[row["user"]][row["pos"]])})  # fmt: skip
            for row in samples.get("rank", []):
                cand = by_user[row["user"]][row["cands"]]
                records.append({"system": name, "task": "rank", "user": row["user"], "candidates": len(cand),
                                "rank": rank_from_scores(cand, row["label"])})  # fmt: skip

    config = {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items() if k not in ("out",)},
        "model": model_name, "data": manifest["source"]["data"], "prepared": str(folder),
        "users_with_split": int((interactions["split"] == options.split).sum()),
        "users_evaluated": len(pairs), "catalogue_items": len(item_ids), "tuning": tuning,
        "adapter": adapter["recipe"]["name"] if (adapter := adapter_manifest(options.model)) else None,
    }  # fmt: skip
    with atomic_dir(Path(options.out), options.overwrite) as tmp:
        with (tmp / PREDICTIONS).open("w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False, default=float) + "\n")
        (tmp / "config.json").write_text(json.dumps({"config": config, "data_manifest": manifest}, indent=2) + "\n")
        report = write_report(tmp, records, config, manifest)
    return report


def _samples(folder: Path, task: str, split: str, users: set[str]) -> list[dict[str, Any]]:
    from datasets import load_from_disk

    rows = load_from_disk(str(folder / "sft" / task))[split]
    return [
        {"user": str(r["user_id"]), "item": r["item_id"], "label": int(r["label"]), "prompt": r["prompt"],
         "candidates": list(r["candidates"])}
        for r in rows if str(r["user_id"]) in users
    ]  # fmt: skip


def _llm_yes_no(rec, rows, records) -> None:
    from llmrec.backends import renormalize_yes

    yes, no = rec.yes_no_ids
    prompts = [r["prompt"] for r in rows]
    if len(yes) == 1 and len(no) == 1:
        logprobs = rec.backend.next_token_logprobs(prompts, [yes[0], no[0]])
    else:
        logprobs = rec.backend.sequence_logprobs(prompts, [yes, no])
    for r, (a, b) in zip(rows, logprobs):
        records.append({"system": "llmrec", "task": "yes_no", "user": r["user"], "item": r["item"],
                        "label": r["label"], "score": renormalize_yes(a, b), "probability": True})  # fmt: skip


def _llm_rank(rec, rows, records) -> None:
    letters = [ids[0] for ids in rec.rank_ids]
    logprobs = rec.backend.next_token_logprobs([r["prompt"] for r in rows], letters)
    for r, lp in zip(rows, logprobs):
        n = len(r["cands"])
        records.append({"system": "llmrec", "task": "rank", "user": r["user"], "candidates": n,
                        "rank": rank_from_scores(np.array(lp[:n]), r["label"])})  # fmt: skip


def merge(folders: list[Path], out: Path, overwrite: bool = False, common_users: bool = False) -> dict[str, Any]:
    """One report from shard folders: their predictions concatenated, every metric recomputed.

    With ``common_users``, only the users every system was scored on (next item) are kept, so runs
    over different numbers of users (baselines over all, llmrec over a sample) compare like for like.
    """
    if not folders:
        raise LlmrecError("evaluate-merge: give at least one shard folder")
    records, configs = [], []
    for f in folders:
        if not (Path(f) / PREDICTIONS).is_file():
            raise LlmrecError(f"{f}: not an evaluate output (no {PREDICTIONS})")
        records += read_predictions(f)
        configs.append(json.loads((Path(f) / "config.json").read_text()))
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
              "tuning": {k: v for c in configs for k, v in c["config"].get("tuning", {}).items()},
              "users_evaluated": len({r["user"] for r in records}), "common_users": common_users}  # fmt: skip
    with atomic_dir(Path(out), overwrite) as tmp:
        with (tmp / PREDICTIONS).open("w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        (tmp / "config.json").write_text(json.dumps({"config": config, "data_manifest": configs[0]["data_manifest"]}, indent=2) + "\n")
        return write_report(tmp, records, config, configs[0]["data_manifest"])
