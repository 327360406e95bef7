"""Benchmark: end-to-end recommendations per second through the Python API.

Run from the repository root after `make install`:

    .venv/bin/python eval/bench_recommend.py --users 16 --k 10

The shipped adapter on the embedded ml-latest-small with the transformers backend: the first
``--users`` users (sorted by id), each with their whole history (the newest 20 items are shown),
top-``k`` with the history excluded, in batches of ``--batch``, in each of ``--modes`` (``llm``:
beam search over the catalogue; ``generate``: the same with the collaborative guide's mass in
every step; ``rerank``: the guide's top candidates rescored by the LLM; the last two need a
model with ``cf/``, as the shipped adapter has; ``--candidates`` sets how many the LLM rescores,
``--llm-scores`` how it scores them).
Loading is timed apart from recommending.
Also times yes/no scoring of one target per user. Prints Markdown rows.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", help="an adapter folder (default: the shipped adapter)")
    parser.add_argument("--data", help="as recommend --data (default: embedded ml-latest-small)")
    parser.add_argument("--modes", nargs="+", default=["llm"], choices=["llm", "generate", "rerank", "cf"])
    parser.add_argument("--candidates", type=int, nargs="+", default=[50],
                        help="rerank mode: how many collaborative candidates the LLM scores (one row per value)")
    parser.add_argument("--llm-scores", nargs="+", choices=["sum", "pmi"], default=None,
                        help="rerank mode: the LLM score (one row per value; default: the adapter's tuned one). "
                        "pmi gets up to three rows: no title prior computed yet, as in a new process of an "
                        "adapter without stored priors; the priors read from the adapter's priors.safetensors, "
                        "as in a new process of an adapter tuned to pmi; the same requests again with the "
                        "priors kept")  # fmt: skip
    args = parser.parse_args()

    import torch

    from llmrec.decoding.recommender import Recommender
    from llmrec.decoding.scoring import PRIORS_FILE
    from llmrec.training.adapter import shipped_adapter_dir

    started = time.perf_counter()
    rec = Recommender.load(args.model, args.data, device=args.device)
    load_s = time.perf_counter() - started
    users = sorted(rec.interactions["user_id"].astype(str).unique(), key=lambda u: (len(u), u))[: args.users]
    histories = [rec.user_history(u) for u in users]
    print(f"load: {load_s:.1f} s; device {rec.backend.device}, {torch.get_num_threads()} threads; "
          f"{len(rec.titles):,} items, {rec.index.trie.n_nodes:,} trie nodes")  # fmt: skip
    print("| task | mode | batch | users | k | seconds | users/s | items/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for batch in args.batch:
        rec = Recommender.load(args.model, args.data, device=args.device, batch_size=batch)  # batch size fixed at load
        scores = args.llm_scores or [rec.fusion.get("llm_score", "sum")]
        stored = Path(args.model or shipped_adapter_dir()) / PRIORS_FILE
        priors = ("none", *(("stored",) if stored.is_file() else ()), "kept")
        runs = [(m, n, s, state) for m in args.modes for n in (args.candidates if m == "rerank" else [None])
                for s in (scores if m == "rerank" else [None]) for state in (priors if s == "pmi" else (None,))]  # fmt: skip
        for mode, n, score, state in runs:
            if n is not None:
                rec.fusion.update(rerank_candidates=n, llm_score=score)
                if state in ("none", "stored"):
                    rec.scorer._priors.clear()
                if state == "stored":  # as Recommender.load does
                    assert rec.scorer.read_priors(stored, rec.catalog_answers()), f"{stored}: another catalogue"
            started = time.perf_counter()
            out = rec.recommend_many(histories, args.k, mode=mode)
            seconds = time.perf_counter() - started
            assert all(len(o) == args.k for o in out)
            note = {"none": ", no prior yet", "stored": ", priors from the adapter", "kept": ", priors kept"}
            label = mode if n is None else f"rerank ({n} candidates, {score}{note.get(state, '')})"
            print(f"| next_item | {label} | {batch} | {len(users)} | {args.k} | {seconds:.1f} | "
                  f"{len(users) / seconds:.2f} | {len(users) * args.k / seconds:.1f} |", flush=True)  # fmt: skip
    targets = [(h[:-1], h[-1], ()) for h in histories]
    started = time.perf_counter()
    probs = rec.predict_yes_no_many(targets)
    seconds = time.perf_counter() - started
    assert all(0 <= p <= 1 for p in probs)
    print(f"| yes_no | - | {args.batch[-1]} | {len(users)} | - | {seconds:.1f} | {len(users) / seconds:.2f} | - |")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
