"""Two adapters' fusions held out on the same valid users, with a paired interval.

``llmrec tune`` reports each adapter's fusion held out (each half of the valid users ranked with
the candidate count and lambda chosen on the other half) but keeps no per-user ranks, so two
tunes cannot be compared user by user. This script scores each ``--model`` as tune does (the
collaborative top ``--candidates`` of its guide, their LLM log-probabilities, its tuned LLM score
and popularity exponent), saves the scored lists, re-derives the held-out ranks with tune's own
functions, and bootstraps the difference over users:

    python eval/fusion_pair.py --data runs/ml-h10-v3 --model runs/adapter-v3 \
        --model runs/adapter-h200-b-cf-yn --out runs/fusion-pair     # ~8 min a model on one thread

``--task yes_no`` does the same for the yes/no fusion: each model's p(yes) on the valid samples,
its tuned input set (``fusion.yes_no.valid.chosen``) fitted on one half of the users and scored
on the other (tune's ``held_out``), and the AUC difference bootstrapped over users.

A model's scored lists are kept in ``--out`` and reused by a later run with the same settings.
The valid split only; the test split is dropped before anything is read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmrec.files import atomic_write_text


def score(model: str, data: str, candidates: int, cache: Path) -> tuple[list, dict]:
    """Per valid user (catalogue positions): the guide's top ``candidates``, their LLM score of
    the adapter's tuned kind, their collaborative log-probabilities, and the target."""
    from llmrec.collab.guide import normalised, top
    from llmrec.decoding.recommender import Recommender
    from llmrec.evaluation.tune import valid_pairs

    rec = Recommender.load(model, data, device="cpu")
    fusion = dict(rec.fusion or {})
    kind, beta = fusion.get("llm_score", "sum"), float(fusion.get("popularity", 0.0))
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved["candidates"] == candidates and saved["llm_score"] == kind and saved["popularity"] == beta:
            return [(u["cands"], np.array(u["llm"]), np.array(u["cf"]), u["target"]) for u in saved["users"]], fusion
    pairs = valid_pairs(rec, Path(data), 0, 0)
    began, scored = time.perf_counter(), []
    for history, target in pairs.values():
        cf = normalised(rec.guide.log_scores([history], rec.item_ids, beta)[0], history)
        cands = [i for i, _ in top(cf, candidates)]
        llm = np.asarray(rec.llm_item_scores(rec._prompt("next_item", history, {}), cands, kind))
        scored.append((cands, llm, cf[cands], target))
    users = [{"cands": [int(i) for i in c], "llm": l.tolist(), "cf": f.tolist(), "target": int(t)} for c, l, f, t in scored]
    atomic_write_text(cache, json.dumps({"model": model, "candidates": candidates, "llm_score": kind, "popularity": beta,
                                 "seconds_per_user": round((time.perf_counter() - began) / max(1, len(scored)), 3),
                                 "users": users}))  # fmt: skip
    return scored, fusion


def yes_no_records(model: str, data: str, name: str, cache: Path) -> tuple[list[dict], dict]:
    """Per valid yes/no sample: the held-out fused p(yes) of the model's tuned input set."""
    from llmrec.collab.guide import YES_NO_FEATURES, yes_no_features
    from llmrec.data import prepared
    from llmrec.decoding.recommender import Recommender
    from llmrec.evaluation.tune import valid_pairs
    from llmrec.evaluation.yes_no_fusion import YES_NO_SETS, held_out

    rec = Recommender.load(model, data, device="cpu")
    tuned = (rec.fusion or {}).get("yes_no") or {}
    chosen = (tuned.get("valid") or {}).get("chosen")
    if chosen not in YES_NO_SETS:
        raise SystemExit(f"{model}: no tuned yes/no fusion (fusion.yes_no.valid.chosen)")
    pairs = valid_pairs(rec, Path(data), 0, 0)
    rows = [r for r in prepared.load_sft(data, "yes_no", "valid") if str(r["user_id"]) in pairs]
    keys = [[str(r["user_id"]), str(r["item_id"])] for r in rows]
    saved = json.loads(cache.read_text()) if cache.exists() else None
    if saved and saved["keys"] == keys:
        p_llm = np.asarray(saved["p_llm"])
    else:
        p_llm = np.asarray(rec.p_yes([r["prompt"] for r in rows]))
        atomic_write_text(cache, json.dumps({"model": model, "keys": keys, "p_llm": p_llm.tolist()}))
    labels = np.asarray([int(r["label"]) for r in rows])
    users = [u for u, _ in keys]
    x = yes_no_features(rec.guide, p_llm, [pairs[u][0] for u in users], [rec.position[i] for _, i in keys],
                        rec.item_ids)  # fmt: skip
    inputs = YES_NO_SETS[chosen]
    columns = [list(YES_NO_FEATURES).index(i) for i in inputs]
    fused = held_out(x[:, columns], labels, users, 0, inputs)
    records = [{"task": "yes_no", "system": name, "user": u, "item": i, "label": int(y), "score": float(p)}
               for (u, i), y, p in zip(keys, labels, fused)]  # fmt: skip
    return records, {"chosen": chosen, "samples": len(rows), "tuned_held_out": tuned["valid"]["held_out"].get(chosen)}


def main() -> None:
    from llmrec.evaluation.report import paired_bootstrap
    from llmrec.evaluation.tune import LAMBDAS, _metrics, held_out_ranks

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a prepared folder")
    parser.add_argument("--model", action="append", required=True, help="a tuned adapter (give two)")
    parser.add_argument("--candidates", type=int, default=20, help="collaborative candidates scored (tune's --candidates)")
    parser.add_argument("--out", required=True, help="folder for the scored lists and the report")
    parser.add_argument("--task", choices=("next_item", "yes_no"), default="next_item", help="which fusion")
    args = parser.parse_args()
    if len(args.model) != 2:
        parser.error("give --model twice")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.task == "yes_no":
        from llmrec.evaluation.metrics import auc_only
        from llmrec.evaluation.report import paired_bootstrap_auc

        report, records = {"data": args.data, "task": "yes_no", "models": {}}, []
        for n, model in enumerate(args.model):
            got, info = yes_no_records(model, args.data, f"m{n}", out / f"p_yes-{n}.json")
            labels, scores = np.asarray([r["label"] for r in got]), np.asarray([r["score"] for r in got])
            info["held_out"] = {k: round(v, 5) for k, v in auc_only(labels, scores, [r["user"] for r in got]).items()}
            report["models"][model] = info
            records += got
        report["second_minus_first"] = paired_bootstrap_auc(records, "m1", "m0")
        _save(out / "report-yes_no.json", report)
        return
    report, records = {"data": args.data, "candidates": args.candidates, "models": {}}, []
    targets = []
    for n, model in enumerate(args.model):
        scored, fusion = score(model, args.data, args.candidates, out / f"scored-{n}.json")
        ranks, chosen = held_out_ranks(scored, LAMBDAS, args.candidates, 0)
        targets.append([t for *_, t in scored])
        records += [{"task": "next_item", "system": f"m{n}", "user": k, "rank": None if r == float("inf") else r}
                    for k, r in enumerate(ranks)]  # fmt: skip
        report["models"][model] = {"llm_score": fusion.get("llm_score", "sum"), "users": len(scored),
                                   "held_out": {**_metrics(ranks), "chosen_by_fold": chosen},
                                   "tuned_held_out": (fusion.get("valid") or {}).get("held_out")}  # fmt: skip
    if targets[0] != targets[1]:
        raise SystemExit("the two models did not score the same valid users and targets")
    report["second_minus_first"] = paired_bootstrap(records, "m1", "m0")
    _save(out / "report.json", report)


def _save(path: Path, report: dict) -> None:
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
