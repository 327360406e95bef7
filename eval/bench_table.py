"""The benchmark table of eval/RESULTS.md from `llmrec evaluate` reports.

Run from the repository root after eval/benchmark.sh:

    .venv/bin/python eval/bench_table.py eval/runs/ml-latest-small/common eval/runs/ml-latest-small/baselines

One Markdown row per system and report. Wall time: for llmrec the summed per-user time of its
next-item searches (loading, yes/no scoring and explanations not included); for a baseline the
tuning on the valid split (every setting of its grid fitted) plus scoring the report's users.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@10", "valid_rate", "auc")


def rows(folder: Path) -> list[str]:
    report = json.loads((folder / "report.json").read_text())
    tuning = report["config"].get("tuning", {})
    out = []
    for name, m in report["systems"].items():
        scoring = m["users"] / m["users_per_s"] if m.get("users_per_s") else float("nan")
        wall = scoring + tuning.get(name, {}).get("tune_s", 0.0)
        cells = [f"{m[c]:.4f}" if c in m else "-" for c in COLUMNS]
        out.append(f"| {folder.name} | {name} | {m['users']:,} | " + " | ".join(cells) + f" | {wall:,.0f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="folders written by llmrec evaluate / evaluate-merge")
    args = parser.parse_args()
    print("| report | system | users | " + " | ".join(COLUMNS) + " | wall s |")
    print("|---|---|---:|" + "---:|" * (len(COLUMNS) + 1))
    for folder in args.reports:
        print("\n".join(rows(folder)))


if __name__ == "__main__":
    main()
