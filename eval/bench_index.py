"""Benchmark: the catalogue index against xgrammar's compiled `choice` grammar, and the per-step
cost of constrained beam search against unconstrained beam search.

Run from the repository root after `make install` (xgrammar is only needed here):

    .venv/bin/pip install --no-deps xgrammar==0.2.8 apache-tvm-ffi
    .venv/bin/python eval/bench_index.py

Titles: the real ones of ml-latest-small (9,125), Last.fm hetrec artists (17,632) and
MovieLens-100K (1,682), deduplicated; beyond those (the 100k row) each real title is reused with
" (Take N)" appended, so the token statistics stay those of real titles. Both systems get the
same titles and the SmolLM2 tokenizer in the same run. Each build runs in a fresh process so its
peak RSS is its own. vLLM turns a `choice` list into an alternation grammar for xgrammar; this
compiles that grammar (`root ::= "t1" | "t2" | ...`) the same way.

The per-step table also times generate mode's collaborative term (`guided`: the mask plus
lambda * (log M(child) - log M(node)) gathered per step) and, apart, the once-per-request build
of the node log-masses. `--steps-only` skips the index builds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def titles(n: int) -> list[str]:
    """``n`` distinct real titles (then real titles with " (Take N)")."""
    from llmrec.data import load

    pool: list[str] = []
    for name in ("ml-latest-small", str(SHARED / "lastfm-2k"), "ml-100k"):
        pool += load(name).catalog["title"].astype(str).tolist()
    pool = list(dict.fromkeys(t.strip() for t in pool if t.strip()))
    out = pool[:n]
    take = 2
    while len(out) < n:
        out += [f"{t} (Take {take})" for t in pool[: n - len(out)]]
        take += 1
    assert len(set(out)) == n
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(system: str, n: int) -> dict:
    """Build one index in this process; time and memory."""
    from llmrec.models import load_tokenizer
    from llmrec.prompting.templates import PromptRenderer

    tok = load_tokenizer()
    names = titles(n)
    before = peak_rss_mib()
    started = time.perf_counter()
    if system == "llmrec":
        import tracemalloc

        from llmrec.decoding.index import CatalogIndex

        prefix = PromptRenderer(tok, 512).chat("system", "user")
        tracemalloc.start()  # numpy reports its buffers to tracemalloc: the build's own peak
        index = CatalogIndex.from_tokenizer(tok, [str(i) for i in range(n)], names, prefix)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        size = sum(a.nbytes for a in vars(index.trie).values() if hasattr(a, "nbytes"))
        extra = {"nodes": index.trie.n_nodes, "index_mib": round(size / 2**20, 1),
                 "traced_peak_mib": round(traced / 2**20)}  # fmt: skip
    else:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tok)
        compiler = xgr.GrammarCompiler(info, max_threads=os.cpu_count() or 1)
        ebnf = "root ::= " + " | ".join(json.dumps(t) for t in names)
        compiled = compiler.compile_grammar(ebnf)
        extra = {"compiled_mib": round(compiled.memory_size_bytes / 2**20, 1)}
    seconds = time.perf_counter() - started
    return {"system": system, "titles": n, "seconds": round(seconds, 2),
            "peak_rss_growth_mib": round(peak_rss_mib() - before), **extra}  # fmt: skip


def step_cost(batch: int, beams: int, repeats: int) -> dict:
    """Seconds per decoding step of beam search with and without the catalogue constraint."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LogitsProcessorList

    from llmrec.decoding.index import CatalogIndex
    from llmrec.decoding.trie import TrieLogitsProcessor, TrieTensors
    from llmrec.models import load_tokenizer, resolve_model
    from llmrec.prompting.templates import PromptRenderer

    torch.manual_seed(0)
    tok = load_tokenizer()
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(resolve_model(None)).eval()
    renderer = PromptRenderer(tok, 512)
    names = titles(9125)
    index = CatalogIndex.from_tokenizer(tok, [str(i) for i in range(len(names))], names, renderer.chat("s", "u"))
    tensors = TrieTensors(index)
    history = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(names[100:120]))
    prompts = [renderer.chat("You are a recommender system.", f"A user watched:\n{history}\nNext?")] * batch
    enc = tok(prompts, return_tensors="pt", padding=True)

    class Count:
        def __init__(self, inner=None):
            self.inner, self.calls, self.seconds = inner, 0, 0.0

        def __call__(self, input_ids, scores):
            self.calls += 1
            if self.inner is None:
                return scores
            started = time.perf_counter()
            out = self.inner(input_ids, scores)
            self.seconds += time.perf_counter() - started
            return out

    # the collaborative guide's node log-masses (generate mode): built once per request from a
    # score per item (seeded random log-weights stand in for a model's: the cost does not depend
    # on the values), then gathered at every step beside the mask
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=len(names)) for _ in range(batch)]
    started = time.perf_counter()
    masses = [index.node_log_mass(w) for w in weights]
    mass_ms = 1000 * (time.perf_counter() - started) / batch
    bonus = torch.as_tensor(np.stack(masses), dtype=torch.float32)

    results = {}
    for label in ("unconstrained", "constrained", "guided"):
        per_step, mask_share = [], []
        for _ in range(repeats):
            inner = None
            if label != "unconstrained":
                inner = TrieLogitsProcessor(tensors, tensors.masks([[]] * batch), enc["input_ids"].shape[1], beams,
                                            bonus=bonus if label == "guided" else None)  # fmt: skip
            counter = Count(inner)
            config = GenerationConfig(num_beams=beams, num_return_sequences=beams, do_sample=False, top_k=None,
                                      top_p=None, temperature=None, max_new_tokens=24, length_penalty=0.0,
                                      eos_token_id=tensors.end_token, pad_token_id=tok.pad_token_id)  # fmt: skip
            started = time.perf_counter()
            with torch.no_grad():
                model.generate(**enc, generation_config=config, logits_processor=LogitsProcessorList([counter]))
            elapsed = time.perf_counter() - started
            per_step.append(elapsed / counter.calls)
            mask_share.append(counter.seconds / counter.calls)
        results[label] = {"ms_per_step": round(1000 * min(per_step), 1),
                          "mask_ms_per_step": round(1000 * min(mask_share), 2)}  # fmt: skip
    return {"batch": batch, "beams": beams, "threads": torch.get_num_threads(), "mass_ms_per_request": round(mass_ms, 2),
            **results}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("SYSTEM", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--systems", nargs="+", default=["llmrec", "xgrammar"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps-only", action="store_true", help="only the per-step decoding costs")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    print("| system | titles | build s | peak RSS growth MiB | size |")
    print("|---|---:|---:|---:|---|")
    for n in [] if args.steps_only else args.sizes:
        for system in args.systems:
            done = subprocess.run([sys.executable, __file__, "--one", system, str(n)], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"| {system} | {n:,} | failed: {done.stderr.strip().splitlines()[-1][:120]} | | |", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            size = (
                f"{r['nodes']:,} nodes, {r['index_mib']} MiB arrays, build peak {r['traced_peak_mib']} MiB (traced)"
                if system == "llmrec"
                else f"{r['compiled_mib']} MiB compiled"
            )
            print(f"| {system} | {n:,} | {r['seconds']} | {r['peak_rss_growth_mib']:,} | {size} |", flush=True)
    r = step_cost(args.batch, args.beams, args.repeats)
    print()
    print(f"Beam search on SmolLM2-135M, batch {r['batch']} x {r['beams']} beams, {r['threads']} threads:")
    print(f"The guide's node log-masses: {r['mass_ms_per_request']} ms per request (once, before decoding).")
    print("| decoding | ms per step | of which the mask (and the guide's gain) |")
    print("|---|---:|---:|")
    for label in ("unconstrained", "constrained", "guided"):
        print(f"| {label} | {r[label]['ms_per_step']} | {r[label]['mask_ms_per_step']} |")


if __name__ == "__main__":
    main()
