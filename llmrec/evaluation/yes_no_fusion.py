"""The yes/no fusion ``llmrec tune`` fits on the valid split (``llmrec.evaluation.tune``):
``p = sigmoid(a * logit p_LLM + b * log p_CF(target) + c [+ d * log(1 + train count) + e * log(1 +
liked train count)])`` by logistic regression (Platt scaling), its inputs chosen by AUC on
held-out valid users."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import LlmrecError

# The yes/no input sets compared on valid; the chosen one is fitted on all valid samples. The
# sets without the LLM are reported to show what it adds, never chosen: "items" (the two counts
# alone) is what the sampling of unseen negatives leaves to any popularity signal.
YES_NO_SETS = {"llm+cf": ("llm", "cf"), "llm+cf+items": ("llm", "cf", "popularity", "liked"),
               "cf+items": ("cf", "popularity", "liked"), "items": ("popularity", "liked")}  # fmt: skip
CHOSEN_FROM = ("llm+cf", "llm+cf+items")


def fit_platt(x: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """sigmoid(coef . x + intercept) by maximum likelihood (lightly regularised): the yes/no fusion."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=100.0, max_iter=1000).fit(x, labels)
    return {"features": list(names), "coef": [float(c) for c in fit.coef_[0]], "intercept": float(fit.intercept_[0])}


def held_out(x: np.ndarray, labels: np.ndarray, users: Sequence[str], seed: int, names: Sequence[str]) -> np.ndarray:
    """Each sample's fused p(yes) from weights fitted on the other half of the users (2-fold by
    user); ``names`` are the inputs of ``x``'s columns."""
    from llmrec.collab.guide import fused_yes

    everyone = sorted(set(users))
    half = set(np.random.default_rng(seed).permutation(everyone)[: len(everyone) // 2].tolist())
    fold = np.asarray([u in half for u in users])
    out = np.empty(len(labels))
    for test in (fold, ~fold):
        train = ~test
        if len(set(labels[train].tolist())) < 2 or not test.any():
            raise LlmrecError("the valid yes/no samples are too few to hold half of the users out (need both labels "
                              "in each half)")  # fmt: skip
        out[test] = fused_yes(x[test], fit_platt(x[train], labels[train], names))
    return out


def tune_yes_no(rec, folder: Path, pairs_all: dict[str, tuple[list[int], int]], seed: int) -> dict[str, Any]:
    """The yes/no fusion: its inputs chosen by AUC on held-out valid users, then fitted on all of
    valid; AUC / user-AUC / ECE of the LLM, the collaborative model and each input set."""
    from llmrec.collab.guide import YES_NO_FEATURES, fused_yes, yes_no_features
    from llmrec.data import prepared
    from llmrec.evaluation.metrics import auc_only, yes_no_metrics

    learned, data = rec.templates["yes_no"], prepared.read_manifest(folder).get("templates", {}).get("yes_no", {})
    if data.get("sha256") not in (None, learned.sha256):  # the fusion would be fitted on prompts the model never reads
        raise LlmrecError(f"{folder}: its yes/no prompts use template v{data.get('version')}, the model learned "
                          f"v{learned.version}; prepare the data with that template to tune yes/no on it")  # fmt: skip
    rows = [r for r in prepared.load_sft(folder, "yes_no", "valid") if str(r["user_id"]) in pairs_all]
    if len({int(r["label"]) for r in rows}) < 2:
        raise LlmrecError(f"{folder}: the valid yes/no samples need both labels to fit the fusion")
    labels = np.asarray([int(r["label"]) for r in rows])
    users = [str(r["user_id"]) for r in rows]
    p_llm = np.asarray(rec.p_yes([r["prompt"] for r in rows]))
    x = yes_no_features(rec.guide, p_llm, [pairs_all[u][0] for u in users], [rec.position[str(r["item_id"])] for r in rows],
                        rec.item_ids)  # fmt: skip
    column = {name: n for n, name in enumerate(YES_NO_FEATURES)}

    def metrics(scores, probability=True):
        if not probability:  # a log-probability or a count: ranking quality only
            return {k: round(auc_only(labels, scores, users)[k], 5) for k in ("auc", "uauc")}
        return {k: round(v, 5) for k, v in yes_no_metrics(labels, scores, users).items() if k in ("auc", "uauc", "ece")}

    report = {"llm": metrics(p_llm), **{name: metrics(x[:, column[name]], False) for name in YES_NO_FEATURES[1:]}}
    held = {}
    for name, inputs in YES_NO_SETS.items():
        held[name] = metrics(held_out(x[:, [column[i] for i in inputs]], labels, users, seed, inputs))
    chosen = max(CHOSEN_FROM, key=lambda name: (held[name]["auc"], -len(YES_NO_SETS[name])))
    inputs = YES_NO_SETS[chosen]
    weights = fit_platt(x[:, [column[i] for i in inputs]], labels, inputs)
    report["fused"] = metrics(fused_yes(x[:, [column[i] for i in inputs]], weights))
    return {**weights, "valid": {"samples": len(rows), "users": len(set(users)), **report, "held_out": held,
                                 "chosen": chosen,
                                 "note": "held_out: each half of the valid users scored by weights fitted on the other "
                                         "half; fused: the chosen inputs fitted and measured on all of valid"}}  # fmt: skip
