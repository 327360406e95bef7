"""Paired bootstrap of the yes/no AUC difference between two evaluations of the same samples.

    python eval/compare_auc.py RUN_A/predictions.jsonl RUN_B/predictions.jsonl [--system llmrec] [--system-b NAME]

Each file is an `llmrec evaluate` predictions.jsonl; the yes/no rows of `--system` in A and of
`--system-b` (default: the same) in B are matched on (user, item); A and B may be one file. Users are resampled with replacement (2,000 times, seed 0); prints the
AUC of A minus B's with its 95% interval, as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmrec.evaluation.report import paired_bootstrap_auc


def rows(path: Path, system: str, name: str) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["system"] == system and r["task"] == "yes_no":
            out.append({**r, "system": name})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--system", default="llmrec", help="the system whose rows are compared (default: llmrec)")
    parser.add_argument("--system-b", help="B's system, when it is another (default: --system)")
    args = parser.parse_args()
    records = rows(args.a, args.system, "a") + rows(args.b, args.system_b or args.system, "b")
    print(json.dumps(paired_bootstrap_auc(records, "a", "b")))


if __name__ == "__main__":
    main()
