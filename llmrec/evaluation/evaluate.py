"""``llmrec evaluate``: llmrec and classical baselines on the same split and users, one report.

Per user, the held-out event of ``split`` is the target and every earlier event the history.
llmrec returns its top-K from the whole catalogue (history excluded); each baseline scores every
item. yes/no and candidate ranking use the prepared samples of that split. Baselines are fitted
on the train events of all users; with ``split="test"`` their settings are first chosen on the
valid split (a short grid, written into the report); with ``split="valid"`` they keep defaults.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.collab import BASELINES, make, score_chunks, tune
from llmrec.data import prepared
from llmrec.data.prepared import history_and_target, sequences
from llmrec.decoding.loading import LoadOptions
from llmrec.errors import LlmrecError
from llmrec.evaluation.metrics import rank_from_scores, rank_in_list
from llmrec.evaluation.report import write_evaluation
from llmrec.files import atomic_dir, check_writable
from llmrec.options import option, parse_ints, parse_list
from llmrec.prompting.prepare import prepared_folder

EVAL_TASKS = ("next_item", "yes_no", "rank")


@dataclass(kw_only=True)
class EvaluateOptions(LoadOptions):
    """What ``evaluate`` runs; the CLI fills it from flags."""

    out: Path = option(help="report folder (written whole or not at all)", parse=Path)
    split: str = option("test", "the held-out split scored", choices=("valid", "test"))
    users: int = option(0, "evaluate N users drawn with --seed (0 = every user with an event in the split)")
    k: list[int] = option(default_factory=lambda: [1, 5, 10, 20], help="cut-offs, e.g. 1,5,10,20", parse=parse_ints)
    tasks: list[str] = option(default_factory=lambda: list(EVAL_TASKS), help="comma-separated: next_item,yes_no,rank",
                              parse=parse_list)  # fmt: skip
    baselines: list[str] = option(default_factory=lambda: list(BASELINES), parse=parse_list,
                                  help="comma-separated: popularity,itemknn,sasrec (empty: none)")  # fmt: skip
    shard: tuple[int, int] = option((0, 1), "evaluate part i/n of the users (merge with evaluate-merge)",
                                    parse=lambda text: parse_shard(text), metavar="I/N")  # fmt: skip
    variants: list[str] = option(default_factory=lambda: ["llm", "cf"], parse=parse_list,
                                 help="with an adapter whose fusion is tuned (llmrec tune), also score these "
                                      "decoding modes as llmrec-MODE: llm, cf, generate, rerank (empty: none)")  # fmt: skip
    explain_users: int = option(10, "users whose top item is explained (groundedness)")
    seed: int = option(0, "seed of the user sample")
    # batching gains ~10% on a CPU, for 4x the memory
    batch_size: int | None = option(None, "prompts per forward pass (default: 8 on a GPU, 1 on CPU)")
    llmrec: bool = option(True, "baselines only (e.g. to merge with llmrec-only shards)", flag="--no-llmrec")
    overwrite: bool = option(False, "replace a non-empty --out folder")
    progress: bool = option(True, "no progress bars", flag="--no-progress")

    def __post_init__(self) -> None:
        if not self.k or any(k <= 0 for k in self.k):
            raise LlmrecError(f"--k: every K must be > 0, got {self.k}")
        self.k = sorted(set(self.k))
        for task in self.tasks:
            if task not in EVAL_TASKS:
                raise LlmrecError(f"--tasks: unknown task '{task}' (known: {', '.join(EVAL_TASKS)})")
        for mode in self.variants:
            if mode not in ("llm", "cf", "generate", "rerank"):
                raise LlmrecError(f"--variants: unknown mode '{mode}' (known: llm, cf, generate, rerank)")
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


def select_users(interactions: pd.DataFrame, split: str, n: int, seed: int, shard: tuple[int, int]) -> list[str]:
    """Users with an event in ``split``: all, or ``n`` drawn with ``seed``; then this shard's part."""
    users = sorted(interactions.loc[interactions["split"] == split, "user_id"].astype(str).unique())
    if not users:
        raise LlmrecError(f"the {split} split is empty: no user has a held-out event")
    if n and n < len(users):
        users = sorted(np.random.default_rng(seed).choice(users, n, replace=False).tolist())
    return users[shard[0] :: shard[1]]


@dataclass
class _Split:
    """The users evaluated and their held-out events, in catalogue positions."""

    folder: Path
    manifest: dict[str, Any]
    interactions: pd.DataFrame
    item_ids: list[str]  # the Recommender's positions: catalogue order
    seqs: dict[str, dict[str, Any]]  # every user's items and splits
    pairs: dict[str, tuple[list[int], int]]  # evaluated user -> (history, held-out item)

    @property
    def position(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}


def _load(options: EvaluateOptions):
    """The prepared split and, when llmrec is evaluated, the Recommender (the model is loaded only then)."""
    from llmrec.decoding.recommender import Recommender

    folder = prepared_folder(options.data, options.progress)
    manifest = prepared.read_manifest(folder)
    rec = None
    if options.llmrec:

        rec = Recommender.load(options.model, folder, options.backend, options.device, _batch_size(options))
        catalog, interactions = rec.catalog, rec.interactions
    else:
        catalog, interactions, _ = prepared.read_tables(folder)
    item_ids = catalog["item_id"].astype(str).tolist()
    seqs = sequences(interactions, {item: i for i, item in enumerate(item_ids)})
    users = select_users(interactions, options.split, options.users, options.seed, options.shard)
    pairs = {u: p for u in users if (p := history_and_target(seqs[u], options.split)) is not None}
    return rec, _Split(folder, manifest, interactions, item_ids, seqs, pairs)


def _batch_size(options: EvaluateOptions) -> int:
    from llmrec.models import resolve_device

    # batching gains ~10% on a CPU for 4x the memory: one prompt at a time there
    return options.batch_size or (8 if resolve_device(options.device).startswith("cuda") else 1)


def _ranking_record(system: str, user: str, items: list[int], split: _Split, rank: float, latency=None) -> dict:
    """A next-item record: the returned items, the target's rank (None beyond the list) and validity."""
    history = set(split.pairs[user][0])
    n = len(split.item_ids)
    return {
        "system": system, "task": "next_item", "user": user, "rank": None if rank == float("inf") else rank,
        "items": [split.item_ids[i] for i in items],
        "valid": sum(1 for i in items if 0 <= i < n and i not in history), "latency_s": latency,
    }  # fmt: skip


def llm_systems(rec, variants: list[str]) -> dict[str, str]:
    """System name -> decoding mode: ``llmrec`` is what ``recommend`` gives by default (the tuned
    fusion when the adapter has one); ``llmrec-MODE`` each other mode asked for that applies."""
    default = rec.default_mode()
    systems = {"llmrec": default}
    if rec.guide is not None and default != "llm":  # a fused default: its parts beside it
        systems.update({f"llmrec-{mode}": mode for mode in variants if mode != default})
    return systems


def _llm_next_item(rec, split: _Split, options: EvaluateOptions) -> list[dict[str, Any]]:
    """llmrec's top-K for every evaluated user (each decoding mode evaluated), and explanations of
    the default mode's top item for the first few."""
    from tqdm.auto import tqdm

    records, kmax, batch = [], max(options.k), _batch_size(options)
    # batches of users with similar history lengths: similar prompt lengths, little padding
    order = sorted(split.pairs, key=lambda u: min(len(split.pairs[u][0]), rec.max_history)) if batch > 1 else list(split.pairs)
    for system, mode in llm_systems(rec, options.variants).items():
        for start in tqdm(range(0, len(order), batch), desc=f"{system} next_item", disable=not options.progress):
            chunk = order[start : start + batch]
            began = time.perf_counter()
            out = rec.recommend_many([[rec.item_ids[i] for i in split.pairs[u][0]] for u in chunk], kmax, mode=mode)
            per_user = (time.perf_counter() - began) / len(chunk)
            for u, recs in zip(chunk, out):
                items = [rec.position[r.item_id] for r in recs]
                rank = rank_in_list(items, [r.score for r in recs], split.pairs[u][1])
                records.append(_ranking_record(system, u, items, split, rank, per_user))
    # the first explain_users of the whole selection, so shards explain the same users as one run
    everyone = select_users(split.interactions, options.split, options.users, options.seed, (0, 1))
    explain = set(everyone[: options.explain_users])
    for top in [r for r in list(records) if r["system"] == "llmrec" and r["user"] in explain and r["items"]]:
        u = top["user"]
        e = rec.explain([rec.item_ids[i] for i in split.pairs[u][0]], top["items"][0])
        records.append({"system": "llmrec", "task": "explain", "user": u, "item": top["items"][0],
                        "grounded": e["grounded"], "text": e["text"]})  # fmt: skip
    return records


def _baselines(options: EvaluateOptions, split: _Split, samples: dict[str, list]) -> tuple[list[dict], dict]:
    """Every baseline fitted on the train events (tuned on valid when testing), scored like llmrec."""
    from tqdm.auto import tqdm

    records, tuning = [], {}
    train = [[i for i, s in zip(v["items"], v["split"]) if s == "train"] for v in split.seqs.values()]
    valid_pairs = [p for v in split.seqs.values() if (p := history_and_target(v, "valid")) is not None and p[0]]
    order, kmax, n_items = list(split.pairs), max(options.k), len(split.item_ids)
    for name in tqdm(options.baselines, desc="baselines", disable=not options.progress):
        if options.split == "test":
            model, tuning[name] = tune(name, train, n_items, valid_pairs)
        else:
            model = make(name).fit(train, n_items)
        needs: dict[str, set[int]] = {}  # per user, the scores the yes/no and rank samples read
        for row in samples.get("yes_no", []):
            needs.setdefault(row["user"], set()).add(row["pos"])
        for row in samples.get("rank", []):
            needs.setdefault(row["user"], set()).update(row["cands"])
        kept: dict[str, dict[int, float]] = {}
        began = time.perf_counter()
        blocks = []
        for start, scores in score_chunks(model, [split.pairs[u][0] for u in order]):
            for i, s in enumerate(scores):
                u = order[start + i]
                history, target = split.pairs[u]
                masked = s.copy()
                masked[history] = -np.inf
                top = np.argsort(-masked, kind="stable")[:kmax].tolist()
                blocks.append((u, top, float(rank_from_scores(s, target, history))))
                kept[u] = {p: float(s[p]) for p in needs.get(u, ())}  # not the whole row: it is n_items wide
        per_user = (time.perf_counter() - began) / max(1, len(order))
        for u, top, rank in blocks:
            records.append(_ranking_record(name, u, top, split, rank, per_user))
        for row in samples.get("yes_no", []):
            records.append({"system": name, "task": "yes_no", "user": row["user"], "item": row["item"],
                            "label": row["label"], "score": kept[row["user"]][row["pos"]]})  # fmt: skip
        for row in samples.get("rank", []):
            cand = np.array([kept[row["user"]][c] for c in row["cands"]])
            records.append({"system": name, "task": "rank", "user": row["user"], "candidates": len(cand),
                            "rank": rank_from_scores(cand, row["label"])})  # fmt: skip
    return records, tuning


def evaluate(options: EvaluateOptions) -> dict[str, Any]:
    """Run the evaluation into ``options.out``; returns the report."""
    from llmrec.decoding.loading import adapter_manifest

    check_writable(Path(options.out), options.overwrite)
    rec, split = _load(options)
    records: list[dict[str, Any]] = []
    if rec is not None and "next_item" in options.tasks:
        records += _llm_next_item(rec, split, options)
    position = split.position
    samples = {t: _samples(split.folder, t, options.split, set(split.pairs)) for t in ("yes_no", "rank")
               if t in options.tasks}  # fmt: skip
    for row in samples.get("yes_no", []):
        row["pos"] = position[row["item"]]
    for row in samples.get("rank", []):
        row["cands"] = [position[c] for c in row["candidates"]]
    if rec is not None:
        _check_templates(rec, split.manifest, samples)
        if rec.guide is not None and rec.fusion.get("tuned_on", {}).get("split") == options.split:
            import warnings

            from llmrec.errors import LlmrecWarning

            warnings.warn(f"the model's fusion was tuned on the {options.split} split it is now scored on: its "
                          "llmrec numbers are optimistic (score the test split)", LlmrecWarning, stacklevel=2)  # fmt: skip
    if rec is not None and "yes_no" in samples:
        _llm_yes_no(rec, samples["yes_no"], records, split, options.variants)
    if rec is not None and "rank" in samples:
        _llm_rank(rec, samples["rank"], records)
    tuning = {}
    if options.baselines:
        baseline_records, tuning = _baselines(options, split, samples)
        records += baseline_records
    adapter = adapter_manifest(options.model) if options.llmrec else None
    config = {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items() if k not in ("out",)},
        "model": str(options.model) if options.model else "shipped adapter",
        "data": split.manifest["source"]["data"], "prepared": str(split.folder),
        "users_with_split": int((split.interactions["split"] == options.split).sum()),
        "users_evaluated": len(split.pairs), "catalogue_items": len(split.item_ids), "tuning": tuning,
        "adapter": adapter["recipe"]["name"] if adapter else None,
    }  # fmt: skip
    with atomic_dir(Path(options.out), options.overwrite) as tmp:
        return write_evaluation(tmp, records, config, split.manifest)


def _samples(folder: Path, task: str, split: str, users: set[str]) -> list[dict[str, Any]]:
    rows = prepared.load_sft(folder, task, split)
    return [
        {"user": str(r["user_id"]), "item": r["item_id"], "label": int(r["label"]), "prompt": r["prompt"],
         "candidates": list(r["candidates"])}
        for r in rows if str(r["user_id"]) in users
    ]  # fmt: skip


def _check_templates(rec, manifest: dict[str, Any], samples: dict[str, list]) -> None:
    """The yes/no and rank prompts are the prepared ones: say so when the model was trained on
    another version of their template (re-prepare the data with this llmrec, or retrain)."""
    import warnings

    from llmrec.errors import LlmrecWarning

    for task in samples:
        data = manifest.get("templates", {}).get(task, {})
        if data.get("sha256") not in (None, rec.templates[task].sha256):
            warnings.warn(f"{task}: the data's prompts use template v{data.get('version')}, the model expects "
                          f"v{rec.templates[task].version}; its {task} scores are of prompts it was not trained on",
                          LlmrecWarning, stacklevel=3)  # fmt: skip
    history = manifest.get("samples", {}).get("max_history")
    if samples and history is not None and history != rec.max_history:
        warnings.warn(f"the data's prompts show up to {history} history items, the model was trained on "
                      f"{rec.max_history}; prepare the data with --max-history {rec.max_history} to score it "
                      "on the prompts it learned", LlmrecWarning, stacklevel=3)  # fmt: skip


def _llm_yes_no(rec, rows, records, split: _Split, variants: list[str]) -> None:
    """p(yes) of the prepared prompts; with a tuned yes/no fusion, ``llmrec`` is the fused
    probability and ``llmrec-llm`` / ``llmrec-cf`` its parts (when asked for)."""
    from llmrec.collab.guide import (
        fused_yes,
        fusion_inputs,
        target_log_probs,
        yes_no_features,
    )

    p_llm = np.asarray(rec.p_yes([r["prompt"] for r in rows]))
    weights = rec.fusion.get("yes_no") if rec.guide is not None else None
    systems: dict[str, tuple[np.ndarray, bool]] = {}
    if not weights:
        systems["llmrec"] = (p_llm, True)
    else:
        histories, targets = [split.pairs[r["user"]][0] for r in rows], [r["pos"] for r in rows]
        names, _, _ = fusion_inputs(weights)
        x = yes_no_features(rec.guide, p_llm, histories, targets, rec.item_ids, names)
        systems["llmrec"] = (fused_yes(x, weights), True)
        if "llm" in variants:
            systems["llmrec-llm"] = (p_llm, True)
        if "cf" in variants:  # log p_CF(target), an input of the fusion: ranking quality only
            s_cf = x[:, names.index("cf")] if "cf" in names else target_log_probs(rec.guide, histories, targets, rec.item_ids)
            systems["llmrec-cf"] = (s_cf, False)
    for system, (scores, probability) in systems.items():
        for r, p in zip(rows, scores.tolist()):
            records.append({"system": system, "task": "yes_no", "user": r["user"], "item": r["item"],
                            "label": r["label"], "score": p, "probability": probability})  # fmt: skip


def _llm_rank(rec, rows, records) -> None:
    scores = rec.rank_scores([r["prompt"] for r in rows], [len(r["cands"]) for r in rows])
    for r, lp in zip(rows, scores):
        records.append({"system": "llmrec", "task": "rank", "user": r["user"], "candidates": len(r["cands"]),
                        "rank": rank_from_scores(np.array(lp), r["label"])})  # fmt: skip
