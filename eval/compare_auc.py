"""Paired bootstrap of the yes/no AUC difference between two evaluations of the same samples
(or, with ``--task next_item``, of the NDCG@k and HR@k difference over the same users; with
``--task rank``, the same over the target's rank among the rank task's candidates).

    python eval/compare_auc.py RUN_A/predictions.jsonl RUN_B/predictions.jsonl [--system llmrec] [--system-b NAME]
    python eval/compare_auc.py A B --task next_item --system-b popularity [--k 10]
    python eval/compare_auc.py A B --task rank --k 1        # HR@1 among the candidates

Each file is an `llmrec evaluate` predictions.jsonl; the rows of `--system` in A and of
`--system-b` (default: the same) in B are matched on (user, item) for yes/no and on the user for
next item and rank; A and B may be one file. Users are resampled with replacement (2,000 times, seed 0);
prints A's metric minus B's with its 95% interval, as JSON. For two runs that `llmrec
evaluate-merge` will not join (they name different models).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmrec.evaluation.report import paired_bootstrap, paired_bootstrap_auc


def rows(path: Path, system: str, name: str, task: str = "yes_no") -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["system"] == system and r["task"] == task:
            # a rank row's rank is the target's among its candidates: scored as a next-item list
            out.append({**r, "system": name, "task": "next_item" if task == "rank" else task})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--system", default="llmrec", help="the system whose rows are compared (default: llmrec)")
    parser.add_argument("--system-b", help="B's system, when it is another (default: --system)")
    parser.add_argument("--task", choices=("yes_no", "next_item", "rank"), default="yes_no", help="what is compared")
    parser.add_argument("--k", type=int, default=10, help="next_item, rank: the cutoff of NDCG and HR (default: 10)")
    args = parser.parse_args()
    records = rows(args.a, args.system, "a", args.task) + rows(args.b, args.system_b or args.system, "b", args.task)
    if args.task == "yes_no":
        result = paired_bootstrap_auc(records, "a", "b")
    else:
        result = paired_bootstrap(records, "a", "b", k=args.k)
    if result is None:
        raise SystemExit(f"{args.a}, {args.b}: no {args.task} rows of the same users to compare")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
