"""Grounded explanations of two adapters on the same requests.

For the first ``--users`` test users (drawn as ``llmrec evaluate`` draws them), the top item that
``--items-from`` recommends by default is explained by each ``--model`` (its LLM; the explain
prompt has no collaborative part), and the grounding check (``llmrec.decoding.grounding``) is
counted; an explanation is grounded when it cites a history item shown in the prompt and invents
none. Same items for every model, so the counts are paired:

    python eval/explain_grounding.py --data runs/ml-h10-v3 --items-from runs/adapter-v3 \
        --model runs/adapter-shipped-llm --model runs/adapter-v3 --users 50 --out runs/explain-grounding.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from llmrec.data import prepared
    from llmrec.decoding.recommender import Recommender
    from llmrec.evaluation.evaluate import select_users

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a prepared folder")
    parser.add_argument("--items-from", required=True, help="the adapter whose default recommendation is explained")
    parser.add_argument("--model", action="append", required=True, help="an adapter that explains (repeat)")
    parser.add_argument("--users", type=int, default=50, help="test users, drawn with seed 0 as evaluate draws them")
    parser.add_argument("--out", help="write the per-user answers and counts here as JSON")
    args = parser.parse_args()

    _, interactions, _ = prepared.read_tables(args.data)
    users = select_users(interactions, "test", args.users, 0, (0, 1))
    source = Recommender.load(args.items_from, args.data, device="cpu")
    seqs = prepared.sequences(interactions, source.position)
    requests = []
    for user in users:
        history, _ = prepared.history_and_target(seqs[user], "test")
        ids = [source.item_ids[i] for i in history]
        [top] = source.recommend(ids, 1)
        requests.append((user, ids, top.item_id))
    del source
    report = {"data": args.data, "items_from": args.items_from, "users": len(requests), "models": {}}
    for model in args.model:
        rec = Recommender.load(model, args.data, device="cpu")
        began, rows = time.perf_counter(), []
        for user, ids, item in requests:
            e = rec.explain(ids, item)
            rows.append({"user": user, "item": item, "grounded": bool(e["grounded"]), "cited": len(e["cited"]),
                         "invented": len(e["invented"]), "text": e["text"]})  # fmt: skip
        grounded = sum(r["grounded"] for r in rows)
        report["models"][model] = {"grounded": grounded, "rate": round(grounded / max(1, len(rows)), 3),
                                   "seconds_per_user": round((time.perf_counter() - began) / max(1, len(rows)), 2),
                                   "answers": rows}  # fmt: skip
        print(f"{model}: {grounded} of {len(rows)} grounded", flush=True)
        del rec
    names = list(report["models"])
    if len(names) == 2:  # paired: users grounded under one model and not the other
        a, b = ([r["grounded"] for r in report["models"][n]["answers"]] for n in names)
        report["discordant"] = {f"only {names[0]}": sum(x and not y for x, y in zip(a, b)),
                                f"only {names[1]}": sum(y and not x for x, y in zip(a, b))}  # fmt: skip
        print(report["discordant"])
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
