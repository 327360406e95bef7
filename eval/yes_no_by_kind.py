"""yes/no AUC split by the kind of No label: liked against disliked (the user's own low ratings:
the hard negatives), and liked against unseen (items drawn from those the user never took).

Reads `llmrec evaluate` folders (their predictions.jsonl, every system in them) and the
prepared folder they scored; the liked train count of each target is added as a reference score.

    python eval/yes_no_by_kind.py --data runs/ml-h10 runs/eval-a runs/eval-b
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the prepared folder the evaluations scored")
    parser.add_argument("evaluations", type=Path, nargs="+", help="llmrec evaluate output folders")
    args = parser.parse_args()
    inter = pd.read_parquet(args.data / "interactions.parquet")
    taken = set(zip(inter["user_id"].astype(str), inter["item_id"].astype(str)))
    train = inter[inter["split"] == "train"]
    liked_count = train[train["liked"]].groupby("item_id").size()
    out: dict[str, dict[str, float]] = {}
    shares = None
    for folder in args.evaluations:
        rows = [json.loads(line) for line in (folder / "predictions.jsonl").open()]
        frame = pd.DataFrame([r for r in rows if r.get("task") == "yes_no"])
        for system, g in frame.groupby("system"):
            kind = np.where(g["label"] == 1, "liked",
                            [("disliked" if (u, i) in taken else "unseen") for u, i in zip(g["user"], g["item"])])  # fmt: skip
            scores = {f"{folder.name}/{system}": g["score"].to_numpy(),
                      "liked train count": liked_count.reindex(g["item"]).fillna(0).to_numpy()}
            shares = shares or pd.Series(kind).value_counts().to_dict()
            for name, s in scores.items():
                row = {"all": roc_auc_score(g["label"], s)}
                for neg in ("disliked", "unseen"):
                    keep = np.isin(kind, ["liked", neg])
                    row[f"liked vs {neg}"] = roc_auc_score(g["label"][keep], s[keep])
                out[name] = {k: round(float(v), 4) for k, v in row.items()}
    print(json.dumps({"labels": shares, "auc": out}, indent=1))


if __name__ == "__main__":
    main()
