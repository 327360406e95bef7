"""From per-user prediction records to metrics, ``report.json``, ``report.md`` and plots.

Every metric is computed from the records alone, so shards evaluated apart and merged give the
numbers of one run (``llmrec evaluate-merge``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.evaluation.metrics import auc_only, ranking_metrics, yes_no_metrics

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"


def _rank(value) -> float:
    return math.inf if value is None else float(value)


def system_metrics(records: list[dict[str, Any]], ks: list[int], n_items: int) -> dict[str, dict[str, Any]]:
    """Metrics per system from prediction records (``task`` in next_item, yes_no, rank, explain)."""
    by_system: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_system[r["system"]][r["task"]].append(r)
    out: dict[str, dict[str, Any]] = {}
    for system, tasks in sorted(by_system.items()):
        m: dict[str, Any] = {}
        if rows := tasks.get("next_item"):
            m.update(ranking_metrics([_rank(r["rank"]) for r in rows], ks))
            m["users"] = len(rows)
            returned = [i for r in rows for i in r["items"]]
            if returned:
                # `valid`: returned items that are catalogue items outside the user's history
                m["valid_rate"] = sum(r["valid"] for r in rows) / len(returned)
                m["coverage"] = len(set(returned)) / n_items
            latencies = [r["latency_s"] for r in rows if r.get("latency_s") is not None]
            if latencies:
                m["latency_p50_s"] = float(np.percentile(latencies, 50))
                m["latency_p95_s"] = float(np.percentile(latencies, 95))
                m["users_per_s"] = len(latencies) / float(np.sum(latencies))
        if rows := tasks.get("rank"):
            n = max(r["candidates"] for r in rows)
            # cut-offs under the candidate count (at n every candidate is a hit); HR@1 always
            cuts = sorted({1, *(k for k in ks if k < n)})
            for key, value in ranking_metrics([_rank(r["rank"]) for r in rows], cuts).items():
                m[f"rank_{key}"] = value
            m["rank_samples"] = len(rows)
        if rows := tasks.get("yes_no"):
            y = [r["label"] for r in rows]
            p = [r["score"] for r in rows]
            if all(r.get("probability", False) for r in rows):
                m.update(yes_no_metrics(y, p, [r["user"] for r in rows]))
            else:  # scores that are not probabilities: ranking quality only
                m.update(auc_only(y, p, [r["user"] for r in rows]))
            m["yes_no_samples"] = len(rows)
        if rows := tasks.get("explain"):
            m["grounded_rate"] = sum(bool(r["grounded"]) for r in rows) / len(rows)
            m["explained"] = len(rows)
        out[system] = m
    return out


BOOTSTRAP_SAMPLES = 2000


def _per_user_gain(rank: float, k: int) -> tuple[float, float]:
    """(NDCG@k, HR@k) of one user from the target's 1-based rank (inf: not returned)."""
    hit = rank <= k
    return (1.0 / math.log2(rank + 1) if hit else 0.0), float(hit)


def paired_bootstrap(records: list[dict[str, Any]], system: str, against: str, k: int = 10,
                     samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any] | None:  # fmt: skip
    """Mean difference (``system`` - ``against``) of NDCG@k and HR@k over the users both scored,
    with a 95% paired bootstrap interval (users resampled with replacement, ``samples`` times)."""
    ranks: dict[str, dict[str, float]] = defaultdict(dict)
    for r in records:
        if r["task"] == "next_item" and r["system"] in (system, against):
            ranks[r["system"]][r["user"]] = _rank(r["rank"])
    users = sorted(set(ranks[system]) & set(ranks[against]))
    if not users:
        return None
    diff = np.array([[a - b for a, b in zip(_per_user_gain(ranks[system][u], k), _per_user_gain(ranks[against][u], k))]
                     for u in users])  # fmt: skip
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(users), size=(samples, len(users)))].mean(axis=1)
    out: dict[str, Any] = {"users": len(users), "resamples": samples}
    for j, name in enumerate((f"ndcg@{k}", f"hr@{k}")):
        lo, hi = np.percentile(means[:, j], [2.5, 97.5])
        out[name] = {"difference": float(diff[:, j].mean()), "ci95": [float(lo), float(hi)]}
    return out


def comparisons(records: list[dict[str, Any]], systems: dict[str, dict[str, Any]], k: int = 10) -> dict[str, Any]:
    """llmrec against the best baseline by NDCG@k on this split (paired bootstrap intervals).

    The best baseline is picked on the same users it is compared on, which favours the baseline.
    """
    baselines = [n for n in systems if not n.startswith("llmrec") and f"ndcg@{k}" in systems[n]]
    if "llmrec" not in systems or f"ndcg@{k}" not in systems["llmrec"] or not baselines:
        return {}
    best = max(baselines, key=lambda n: systems[n][f"ndcg@{k}"])
    out = {}
    for name in [n for n in systems if n.startswith("llmrec") and f"ndcg@{k}" in systems[n]]:
        if (result := paired_bootstrap(records, name, best, k)) is not None:
            out[f"{name} - {best}"] = result
    return out


def paired_bootstrap_auc(records: list[dict[str, Any]], system: str, against: str,
                         samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any] | None:  # fmt: skip
    """yes/no AUC of ``system`` minus ``against``'s on the samples both scored, with a 95% paired
    bootstrap interval: users are resampled with replacement (a user's samples stay together)
    and both AUCs are computed on each resample (ties count half, as in the reported AUC)."""
    from scipy.stats import rankdata

    scores: dict[str, dict[tuple, float]] = defaultdict(dict)
    labels: dict[tuple, int] = {}
    for r in records:
        if r["task"] == "yes_no" and r["system"] in (system, against):
            key = (r["user"], str(r["item"]))
            scores[r["system"]][key] = float(r["score"])
            labels[key] = int(r["label"])
    keys = sorted(set(scores[system]) & set(scores[against]))
    y = np.array([labels[k] for k in keys], dtype=int)
    if len(set(y.tolist())) < 2:
        return None
    a = np.array([scores[system][k] for k in keys])
    b = np.array([scores[against][k] for k in keys])

    def auc(rows: np.ndarray, s: np.ndarray) -> float:
        pos = y[rows] == 1
        n1, n0 = int(pos.sum()), int((~pos).sum())
        if not n1 or not n0:
            return float("nan")
        return float((rankdata(s[rows])[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

    rows_of: dict[str, list[int]] = defaultdict(list)  # keys are sorted, so users come in order
    for n, (u, _) in enumerate(keys):
        rows_of[u].append(n)
    groups = [np.asarray(rows) for rows in rows_of.values()]
    everything = np.arange(len(keys))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples):
        rows = np.concatenate([groups[i] for i in rng.integers(0, len(groups), size=len(groups))])
        diffs.append(auc(rows, a) - auc(rows, b))
    diffs = np.asarray(diffs)
    diffs = diffs[np.isfinite(diffs)]  # a resample with one class only has no AUC
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"users": len(groups), "samples": len(keys), "resamples": int(len(diffs)),
            "auc": {"difference": auc(everything, a) - auc(everything, b), "ci95": [float(lo), float(hi)]}}  # fmt: skip


def yes_no_comparisons(records: list[dict[str, Any]], systems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """llmrec's yes/no AUC against the baseline with the best AUC (paired bootstrap intervals)."""
    baselines = [n for n in systems if not n.startswith("llmrec") and "auc" in systems[n]]
    if "llmrec" not in systems or "auc" not in systems["llmrec"] or not baselines:
        return {}
    best = max(baselines, key=lambda n: systems[n]["auc"])
    out = {}
    for name in [n for n in systems if n.startswith("llmrec") and "auc" in systems[n]]:
        if (result := paired_bootstrap_auc(records, name, best)) is not None:
            out[f"{name} - {best}"] = result
    return out


def is_evaluation(folder: Path) -> bool:
    """Whether ``folder`` was written by ``llmrec evaluate`` (or ``evaluate-merge``)."""
    return (Path(folder) / PREDICTIONS).is_file()


def read_predictions(folder: Path) -> list[dict[str, Any]]:
    """The per-user prediction records of an evaluation folder."""
    path = Path(folder) / PREDICTIONS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_config(folder: Path) -> dict[str, Any]:
    """``{"config": ..., "data_manifest": ...}`` of an evaluation folder."""
    return json.loads((Path(folder) / CONFIG).read_text(encoding="utf-8"))


def write_evaluation(folder: Path, records: list[dict[str, Any]], config: dict[str, Any],
                     data_manifest: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Write the records, the config and the report into ``folder`` (a temporary folder); returns the report."""
    with (Path(folder) / PREDICTIONS).open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, default=float) + "\n")
    (Path(folder) / CONFIG).write_text(json.dumps({"config": config, "data_manifest": data_manifest}, indent=2) + "\n")
    return write_report(folder, records, config, data_manifest)


def write_report(folder: Path, records: list[dict[str, Any]], config: dict[str, Any],
                 data_manifest: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Write report.json, report.md and the plots into ``folder`` (already a temporary folder)."""
    ks = config["k"]
    systems = system_metrics(records, ks, config["catalogue_items"])
    report = {"systems": systems, "comparisons": comparisons(records, systems),
              "yes_no_comparisons": yes_no_comparisons(records, systems), "config": config,
              "data_manifest": data_manifest}  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=float) + "\n")
    (folder / "report.md").write_text(markdown(report))
    plots(folder, report, records)
    return report


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    systems = report["systems"]
    keys = [f"{m}@{k}" for k in cfg["k"] for m in ("hr", "ndcg", "mrr")]
    extra = ["valid_rate", "coverage", "rank_hr@1", "auc", "uauc", "accuracy", "f1", "ece", "grounded_rate",
             "latency_p50_s", "latency_p95_s", "users_per_s"]  # fmt: skip
    extra = [k for k in extra if any(k in m for m in systems.values())]
    lines = [
        f"# llmrec evaluation: {cfg['data']} ({cfg['split']} split)",
        "",
        (
            f"Model: `{cfg['model']}`. Users: {cfg['users_evaluated']:,} of {cfg['users_with_split']:,}"
            f" with a {cfg['split']} event. Catalogue: {cfg['catalogue_items']:,} items. Ties are broken"
            " against the system scored; an item not returned within K is a miss."
        ),
        "",
        "| system | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for name, m in systems.items():
        lines.append(f"| {name} | " + " | ".join(_cell(m.get(k, "")) for k in keys) + " |")
    if extra:
        lines += ["", "| system | " + " | ".join(extra) + " |", "|---|" + "---:|" * len(extra)]
        for name, m in systems.items():
            lines.append(f"| {name} | " + " | ".join(_cell(m.get(k, "")) for k in extra) + " |")
    if compared := report.get("comparisons"):
        lines += ["", "Differences against the best baseline (paired bootstrap over users, 95% interval):", "",
                  "| comparison | users | NDCG@10 difference [95% CI] | HR@10 difference [95% CI] |", "|---|---:|---|---|"]
        for name, c in compared.items():
            cells = [f"{c[m]['difference']:+.4f} [{c[m]['ci95'][0]:+.4f}, {c[m]['ci95'][1]:+.4f}]"
                     for m in ("ndcg@10", "hr@10")]  # fmt: skip
            lines.append(f"| {name} | {c['users']:,} | {cells[0]} | {cells[1]} |")
    if compared := report.get("yes_no_comparisons"):
        lines += ["", "yes/no AUC against the baseline with the best AUC (paired bootstrap over users, 95% interval):",
                  "", "| comparison | users | samples | AUC difference [95% CI] |", "|---|---:|---:|---|"]
        for name, c in compared.items():
            d = c["auc"]
            lines.append(f"| {name} | {c['users']:,} | {c['samples']:,} | {d['difference']:+.4f} "
                         f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] |")  # fmt: skip
    if tuning := cfg.get("tuning"):
        lines += ["", "Baseline settings chosen on the valid split:", ""]
        lines += [f"- {name}: {json.dumps(t)}" for name, t in tuning.items()]
    lines += ["", "Plots: `hr_ndcg.png`" + (", `reliability.png`" if any("ece" in m for m in systems.values()) else "")]
    return "\n".join(lines) + "\n"


def plots(folder: Path, report: dict[str, Any], records: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = report["config"]["k"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, m in report["systems"].items():
        if f"hr@{ks[0]}" in m:
            axes[0].plot(ks, [m[f"hr@{k}"] for k in ks], marker="o", label=name)
            axes[1].plot(ks, [m[f"ndcg@{k}"] for k in ks], marker="o", label=name)
    for ax, title in zip(axes, ("HR@K", "NDCG@K")):
        ax.set_xlabel("K")
        ax.set_title(title)
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(folder / "hr_ndcg.png", dpi=100)
    plt.close(fig)
    rows = [r for r in records if r["task"] == "yes_no" and r.get("probability")]
    if rows:
        y = np.array([r["label"] for r in rows], dtype=float)
        p = np.array([r["score"] for r in rows], dtype=float)
        edges = np.linspace(0, 1, 11)
        index = np.minimum((p * 10).astype(int), 9)
        conf = [p[index == b].mean() for b in range(10) if (index == b).any()]
        acc = [y[index == b].mean() for b in range(10) if (index == b).any()]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.plot(conf, acc, marker="o", label="llmrec")
        ax.set_xlabel("predicted p(yes)")
        ax.set_ylabel("fraction liked")
        ax.set_xticks(edges[::2])
        ax.set_title("Reliability (yes/no)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / "reliability.png", dpi=100)
        plt.close(fig)
