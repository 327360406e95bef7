"""Benchmark: training throughput (samples/s, tokens/s) and peak memory of the shipped recipes.

Run from the repository root after `make install`, on a folder written by `llmrec prepare`:

    .venv/bin/llmrec prepare --out runs/ml-latest-small
    .venv/bin/python eval/bench_train.py --data runs/ml-latest-small --out /tmp/bench-train

Each recipe trains in its own process through the CLI, so the peak resident memory is that
run's alone (on a GPU the manifest's peak is CUDA memory allocated by torch). The quick recipe
runs whole; the full recipe (an epoch is hours on a CPU) runs `--full-steps` optimizer steps,
which is enough for a steady rate. Valid evaluation is cut to `--eval-samples` per task: it is
not part of the throughput, only of the wall time. Prints a Markdown table for eval/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_prepare import timed  # eval/ is on sys.path when this script runs


def run(data: Path, out: Path, recipe: str, extra: list[str]) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS in MiB, and the adapter manifest of one training run."""
    cmd = [sys.executable, "-m", "llmrec", "train", "--data", str(data), "--out", str(out), "--recipe", recipe,
           "--overwrite", "--no-progress", *extra]
    seconds, rss = timed(cmd)
    return seconds, rss, json.loads((out / "llmrec_adapter.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a prepared data folder")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-train"))
    parser.add_argument("--full-steps", type=int, default=6, help="optimizer steps of the full recipe")
    parser.add_argument("--eval-samples", type=int, default=16, help="valid samples per task")
    parser.add_argument("--recipes", nargs="+", default=["quick", "full"])
    args = parser.parse_args()

    rows = []
    for recipe in args.recipes:
        extra = ["--set", f"max_eval_samples={args.eval_samples}"]
        if recipe == "full":
            extra += ["--max-steps", str(args.full_steps)]
        wall, rss, manifest = run(args.data, args.out / recipe, recipe, extra)
        t, r = manifest["training"], manifest["recipe"]
        per_step = r["batch_size"] * r["grad_accum"] * t["processes"]
        rows.append(
            f"| {recipe} | {r['lora_r']} | {per_step} | {t['steps']} | {t['samples']:,} | {t['tokens']:,} | "
            f"{t['seconds']:.1f} | {t['samples_per_second']:.2f} | {t['tokens_per_second']:.0f} | "
            f"{t['peak_memory_mib']:,} | {rss:,.0f} | {wall:.0f} | {t['device']}, {t['precision']} |"
        )
        print(rows[-1], flush=True)
    print()
    print("| recipe | LoRA r | samples/step | steps | samples | tokens | train s | samples/s | tokens/s "
          "| peak MiB (manifest) | peak RSS MiB | wall s | device |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
