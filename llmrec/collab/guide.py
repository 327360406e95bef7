"""The collaborative guide: a collaborative model trained with an adapter and saved inside it.

``llmrec train`` fits one on the prepared train split (``--cf``; by default the candidate with the
better valid NDCG@10) and writes it to ``ADAPTER/cf/``: ``config.json`` (model, settings, valid
metrics) beside ``item_ids.json`` (the model's item order), ``weights.safetensors`` and
``item_stats.safetensors`` (each item's train interactions and likes, which the yes/no fusion
reads; adapters from before it have none and ``llmrec tune`` adds it). The
guide turns a history into log-weights over the *serving* catalogue (items added after training
get the row's median weight: the model has no opinion on them), which decoding mixes with the
LLM's probabilities (``CatalogIndex.node_log_mass``, ``Recommender``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.split import item_statistics
from llmrec.errors import LlmrecError

GUIDE_DIR = "cf"
CONFIG = "config.json"
ITEM_IDS = "item_ids.json"
WEIGHTS = "weights.safetensors"
STATS = "item_stats.safetensors"
# --cf choices; "auto" tunes these and keeps the better on valid NDCG@10
CHOICES = ("auto", "sasrec", "itemknn", "popularity", "none")
AUTO = ("sasrec", "itemknn")


@dataclass
class Guide:
    """A fitted collaborative model with the item ids it was trained on."""

    name: str
    model: Any
    item_ids: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    # per item of ``item_ids``: train interactions ("count") and liked ones ("liked"); None if unknown
    stats: dict[str, np.ndarray] | None = None
    _bound: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.item_ids = [str(i) for i in self.item_ids]  # its own list: a catalogue's grows with add_items

    def save(self, adapter: Path) -> int:
        """Write ``adapter/cf/``; returns the bytes written."""
        folder = Path(adapter) / GUIDE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return self.write(folder)

    def write(self, folder: Path) -> int:
        """Write the guide's files into ``folder`` itself; returns the bytes written."""
        from safetensors.numpy import save

        folder = Path(folder)
        config, arrays = self.model.state()
        # bytes, not save_file: that creates the file 0600, unreadable to other users of an install
        (folder / WEIGHTS).write_bytes(save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
        (folder / ITEM_IDS).write_text(json.dumps(self.item_ids))
        (folder / CONFIG).write_text(json.dumps({"model": self.name, "config": config, **self.report}, indent=2) + "\n")
        if self.stats is not None:
            self.save_stats(folder)
        return sum(p.stat().st_size for p in folder.iterdir())

    def save_stats(self, folder: Path) -> None:
        """Write ``folder/item_stats.safetensors`` (``folder``: an adapter's ``cf/``) through a temporary file."""
        from safetensors.numpy import save

        from llmrec.files import atomic_write_bytes

        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.stats.items()}
        atomic_write_bytes(Path(folder) / STATS, save(arrays))

    @classmethod
    def load(cls, adapter: str | Path) -> Guide | None:
        """The guide saved in ``adapter/cf/``; None when the adapter has none."""
        from safetensors.numpy import load_file

        from llmrec.collab import model_class

        folder = Path(adapter) / GUIDE_DIR
        if not (folder / CONFIG).is_file():
            return None
        try:
            config = json.loads((folder / CONFIG).read_text())
            item_ids = [str(i) for i in json.loads((folder / ITEM_IDS).read_text())]
            arrays = load_file(str(folder / WEIGHTS))
            model = model_class(config["model"]).from_state(config["config"], arrays)
            stats = load_file(str(folder / STATS)) if (folder / STATS).is_file() else None
            if stats is not None and (set(stats) != {"count", "liked"} or any(v.shape != (len(item_ids),) for v in stats.values())):
                raise ValueError(f"{STATS} must hold 'count' and 'liked', one value per item")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LlmrecError(f"{folder}: unreadable collaborative model ({exc})") from None
        report = {k: v for k, v in config.items() if k not in ("model", "config")}
        return cls(config["model"], model, item_ids, report, stats)

    def item_stats(self, catalogue_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """``stats`` in catalogue order; an item the model never saw gets the median of each
        (no opinion, as in :meth:`log_scores`), not the zero of an item nobody took."""
        if self.stats is None:
            raise LlmrecError(f"{GUIDE_DIR}/{STATS}: missing; the fusion needs it (llmrec tune adds it)")
        to_model, known = self._bind(catalogue_ids)
        out = {}
        for name, values in self.stats.items():
            out[name] = np.full(len(catalogue_ids), float(np.median(values)) if len(values) else 0.0)
            out[name][known] = values[to_model[known]]
        return out

    def _bind(self, catalogue_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(catalogue position -> model position or -1, catalogue positions the model knows)."""
        key = (id(catalogue_ids), len(catalogue_ids))  # a Recommender's list only grows (add_items)
        bound = self._bound  # read once: add_items may rebind it from another thread
        if bound is None or bound[0] != key:
            own = {item: i for i, item in enumerate(self.item_ids)}
            to_model = np.fromiter((own.get(str(i), -1) for i in catalogue_ids), dtype=np.int64, count=len(catalogue_ids))
            bound = self._bound = (key, to_model, np.flatnonzero(to_model >= 0))
        return bound[1], bound[2]

    def unknown_items(self, catalogue_ids: Sequence[str]) -> np.ndarray:
        """Catalogue positions the model never saw (items added after training)."""
        to_model, _ = self._bind(catalogue_ids)
        return np.flatnonzero(to_model < 0)

    def knows(self, history: Sequence[int], catalogue_ids: Sequence[str]) -> bool:
        """Whether any history item is one the model saw (else it has nothing to go on)."""
        to_model, _ = self._bind(catalogue_ids)
        return any(0 <= i < len(to_model) and to_model[i] >= 0 for i in history)

    def log_scores(self, histories: Sequence[Sequence[int]], catalogue_ids: Sequence[str],
                   popularity: float = 0.0) -> np.ndarray:  # fmt: skip
        """(histories, catalogue items) log-weights; histories are catalogue positions, oldest first.

        History items the model never saw are left out of its input; catalogue items it never
        saw get the row's median weight (no opinion), so they stay reachable. ``popularity``
        (beta, the next-item fusion's tuned exponent) adds ``beta * log(1 + train interactions)``
        to each item's weight: ``p_CF(item) * (1 + n_item) ** beta`` once normalised.
        """
        to_model, known = self._bind(catalogue_ids)
        inputs = [[int(to_model[i]) for i in h if 0 <= i < len(to_model) and to_model[i] >= 0] for h in histories]
        scores = np.asarray(self.model.log_scores(inputs), dtype=np.float64)
        out = np.repeat(np.median(scores, axis=1, keepdims=True), len(catalogue_ids), axis=1)
        out[:, known] = scores[:, to_model[known]]
        if popularity:
            out += popularity * np.log1p(self.item_stats(catalogue_ids)["count"])
        return out


def fit_guide(folder: str | Path, choice: str = "auto", progress: bool = False, max_mb: float = 0) -> Guide | None:
    """Fit the collaborative guide on a prepared folder's train split, tuned on its valid split.

    ``choice`` is a model name, ``auto`` (each of ``AUTO``, the better valid NDCG@10 kept) or
    ``none``. Each is tuned on the baselines' grid (``llmrec.collab.GRIDS``), less the settings
    whose weights take more than ``max_mb`` megabytes (0: no limit; the recipe's ``cf_max_mb``,
    which keeps the shipped adapter within 10 MB). Test events are never read: the split column
    decides what is train and valid.
    """
    from tqdm.auto import tqdm

    from llmrec.collab import tune
    from llmrec.data import prepared

    if choice not in CHOICES:
        raise LlmrecError(f"--cf: unknown model '{choice}' (known: {', '.join(CHOICES)})")
    if choice == "none":
        return None
    catalog, interactions, _ = prepared.read_tables(folder)
    item_ids, train, valid = train_and_valid(catalog, interactions)
    if not valid:
        raise LlmrecError(f"{folder}: no valid events to tune the collaborative model on")
    began, tried, best, refused = time.perf_counter(), {}, None, None
    for name in tqdm(AUTO if choice == "auto" else (choice,), desc="collaborative model", disable=not progress):
        try:
            model, chosen = tune(name, train, len(item_ids), valid, max_bytes=int(max_mb * 1e6))
        except LlmrecError as exc:  # no setting within cf_max_mb: under auto, the other model may fit
            tried[name], refused = {"over_budget": str(exc)}, exc
            continue
        tried[name] = chosen
        if best is None or chosen["valid_ndcg@10"] > best[2]["valid_ndcg@10"]:
            best = (name, model, chosen)
    if best is None:
        raise refused
    name, model, chosen = best
    report = {"choice": choice, "valid_ndcg@10": chosen["valid_ndcg@10"], "setting": chosen["setting"],
              "tried": tried, "max_mb": max_mb, "train_users": len(train), "valid_users": len(valid),
              "seconds": round(time.perf_counter() - began, 1)}  # fmt: skip
    return Guide(name, model, item_ids, report, item_statistics(interactions, item_ids))


def train_and_valid(catalog, interactions) -> tuple[list[str], list[list[int]], list[tuple[list[int], int]]]:
    """A prepared folder's item ids, per-user train sequences (catalogue positions, in order) and
    valid (history, target) pairs, from its tables (``prepared.read_tables``): what collaborative
    models are tuned on. Test events are dropped first."""
    from llmrec.data import prepared

    item_ids = catalog["item_id"].astype(str).tolist()
    seqs = prepared.sequences(interactions[interactions["split"] != "test"], {i: n for n, i in enumerate(item_ids)})
    train = [[i for i, s in zip(v["items"], v["split"]) if s == "train"] for v in seqs.values()]
    valid = [p for v in seqs.values() if (p := prepared.history_and_target(v, "valid")) is not None and p[0]]
    return item_ids, train, valid


# log p_CF below this is taken as this where it feeds a fusion (a repeat of a history item has -inf)
CF_FLOOR = -50.0


def normalised(log_weights: np.ndarray, excluded: Sequence[int]) -> np.ndarray:
    """Log-probabilities over the items outside ``excluded`` (-inf for those)."""
    from scipy.special import logsumexp

    out = np.asarray(log_weights, dtype=np.float64).copy()
    out[list(excluded)] = -np.inf
    if np.isfinite(out).any():
        out -= logsumexp(out[np.isfinite(out)])
    return out


def top(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best finite scores as (position, score), best first (ties: lower position first)."""
    finite = np.flatnonzero(np.isfinite(scores))
    best = finite[np.argsort(-scores[finite], kind="stable")[:k]]
    return [(int(i), float(scores[i])) for i in best]


def target_log_probs(guide: Guide, histories: Sequence[Sequence[int]], targets: Sequence[int],
                     catalogue_ids: Sequence[str]) -> np.ndarray:  # fmt: skip
    """log p_CF(target | history), normalised over the items outside the history (floored)."""
    out = np.empty(len(targets))
    for n, (history, target) in enumerate(zip(histories, targets)):
        out[n] = normalised(guide.log_scores([history], catalogue_ids)[0], history)[target]
    return np.maximum(out, CF_FLOOR)


# The yes/no fusion's inputs: the LLM's logit p(yes), log p_CF(target | history), and two item
# statistics of the train split, log(1 + interactions) and log(1 + liked interactions)
YES_NO_FEATURES = ("llm", "cf", "popularity", "liked")


def yes_no_features(guide: Guide, p_llm, histories: Sequence[Sequence[int]], targets: Sequence[int],
                    catalogue_ids: Sequence[str], names: Sequence[str] = YES_NO_FEATURES) -> np.ndarray:  # fmt: skip
    """(samples, names) inputs of the yes/no fusion; ``targets`` are catalogue positions."""
    columns = []
    stats = guide.item_stats(catalogue_ids) if {"popularity", "liked"} & set(names) else {}
    for name in names:
        if name == "llm":
            columns.append(logit(p_llm))
        elif name == "cf":
            columns.append(target_log_probs(guide, histories, targets, catalogue_ids))
        elif name in ("popularity", "liked"):
            columns.append(np.log1p(stats["count" if name == "popularity" else "liked"][np.asarray(targets, dtype=np.int64)]))
        else:
            raise LlmrecError(f"fusion.yes_no.features: unknown input '{name}' (known: {', '.join(YES_NO_FEATURES)})")
    return np.column_stack(columns) if columns else np.empty((len(targets), 0))


def popularity_exponent(fusion: dict[str, Any], where: str) -> float:
    """The next-item fusion's popularity exponent (``fusion.popularity``; 0 when absent, as in
    adapters tuned before it)."""
    value = fusion.get("popularity", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise LlmrecError(f"{where}: fusion.popularity must be a number >= 0, got {value!r}")
    return float(value)


def fusion_inputs(weights: dict[str, Any]) -> tuple[list[str], np.ndarray, float]:
    """(input names, coefficients, intercept) of a tuned yes/no fusion; adapters tuned before the
    item statistics store (a, b, c) of sigmoid(a * logit p_LLM + b * log p_CF + c)."""
    where = "llmrec_adapter.json: fusion.yes_no"
    try:
        if "features" in weights:
            names, coef = [str(n) for n in weights["features"]], np.asarray(weights["coef"], dtype=np.float64)
            intercept = float(weights["intercept"])
        else:
            names, coef = ["llm", "cf"], np.asarray([weights["a"], weights["b"]], dtype=np.float64)
            intercept = float(weights["c"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LlmrecError(f"{where}: unreadable weights ({exc!r})") from None
    if coef.shape != (len(names),) or not np.isfinite(coef).all() or not np.isfinite(intercept):
        raise LlmrecError(f"{where}: expected one finite coef per feature, got {len(names)} features and coef {coef.tolist()}")
    if unknown := [n for n in names if n not in YES_NO_FEATURES]:
        raise LlmrecError(f"{where}.features: unknown input '{unknown[0]}' (known: {', '.join(YES_NO_FEATURES)})")
    return names, coef, intercept


def fused_yes(x: np.ndarray, weights: dict[str, Any]) -> np.ndarray:
    """p(yes) of the yes/no fusion: sigmoid(coef . x + intercept), x from :func:`yes_no_features`."""
    _, coef, intercept = fusion_inputs(weights)
    z = np.asarray(x, dtype=np.float64) @ coef + intercept
    return 1.0 / (1.0 + np.exp(-z))


def fuse_yes_no(guide: Guide, weights: dict[str, Any], p_llm, histories: Sequence[Sequence[int]],
                targets: Sequence[int], catalogue_ids: Sequence[str]) -> np.ndarray:  # fmt: skip
    """The tuned yes/no fusion of the LLM's p(yes) for (history, target) pairs."""
    names, _, _ = fusion_inputs(weights)
    return fused_yes(yes_no_features(guide, p_llm, histories, targets, catalogue_ids, names), weights)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)
