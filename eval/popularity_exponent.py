"""The next-item popularity exponent on a valid split, without the LLM.

``llmrec tune`` chooses beta in ``p_CF(item) * (1 + train interactions) ** beta`` by the
collaborative model's own valid NDCG@10 over the whole catalogue; this prints the same table
(``llmrec.evaluation.tune.choose_popularity``, every valid user) for an adapter's guide, or for a
guide fitted here on the prepared folder's train split (``--cf``), so that data sets can be
compared before any LLM scoring:

    python eval/popularity_exponent.py --data runs/ml100k-h10 --model runs/adapter-ml100k
    python eval/popularity_exponent.py --data runs/lastfm-h10 --cf itemknn --out lastfm.json

Only train and valid events are read (the test split is dropped first), unless ``--test`` asks
for the same table on the test split as well: a diagnostic after the choice (the exponent chosen
on valid is reported beside it, never chosen from it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace


def main() -> None:
    from llmrec.collab.guide import Guide, fit_guide, train_and_valid
    from llmrec.data import prepared
    from llmrec.data.split import item_statistics
    from llmrec.evaluation.tune import POPULARITY, choose_popularity

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a prepared folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="an adapter folder whose cf/ is scored")
    source.add_argument("--cf", help="fit this collaborative model (sasrec, itemknn, auto) on --data's train split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the two folds of the held-out choice")
    parser.add_argument("--test", action="store_true", help="also the table on the test split (diagnostic)")
    parser.add_argument("--out", help="also write the table here as JSON")
    args = parser.parse_args()

    began = time.perf_counter()
    catalog, interactions, _ = prepared.read_tables(args.data)
    item_ids, _, valid = train_and_valid(catalog, interactions)
    if args.model:
        guide = Guide.load(args.model)
        if guide is None:
            raise SystemExit(f"{args.model}: no collaborative model (cf/)")
        if guide.stats is None:
            guide.stats = item_statistics(interactions, guide.item_ids)
    else:
        guide = fit_guide(args.data, args.cf)
    fitted = time.perf_counter() - began
    rec = SimpleNamespace(guide=guide, item_ids=item_ids)
    table = choose_popularity(rec, {str(n): pair for n, pair in enumerate(valid)}, list(POPULARITY), args.seed)
    report = {"data": args.data, "guide": guide.name, "setting": guide.report.get("setting"), "valid_users": len(valid),
              "seconds": {"guide": round(fitted, 1), "table": round(time.perf_counter() - began - fitted, 1)}, **table}  # fmt: skip
    if args.test:  # the history before each test event (train and valid events), the same counts
        seqs = prepared.sequences(interactions, {item: n for n, item in enumerate(item_ids)})
        test = [p for v in seqs.values() if (p := prepared.history_and_target(v, "test")) is not None and p[0]]
        on_test = choose_popularity(rec, {str(n): pair for n, pair in enumerate(test)}, list(POPULARITY), args.seed)
        report["test"] = {"users": len(test), "by_exponent": on_test["by_exponent"],
                          "at_the_valid_choice": on_test["by_exponent"][f"{table['popularity']:g}"]}  # fmt: skip
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
