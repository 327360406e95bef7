"""Prompt and answer lengths in tokens, per task, of one or more prepared folders.

    .venv/bin/python eval/prompt_lengths.py runs/ml-v1 runs/ml-v2

Counts with the embedded model's tokenizer (or ``--model``) over each task's train split: mean
and 95th percentile of the prompt, of the answer, and of both (what a training step pays for).
Prints Markdown for eval/RESULTS.md.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--model", default=None)
    parser.add_argument("--split", default="train")
    args = parser.parse_args()

    from llmrec.data import prepared
    from llmrec.models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    print("| data | templates | task | samples | prompt mean | prompt p95 | answer mean | total mean | total p95 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for folder in args.folders:
        manifest = prepared.read_manifest(folder)
        for task in manifest["samples"]["tasks"]:
            rows = prepared.load_sft(folder, task, args.split)
            if not len(rows):
                continue
            prompt = np.array([len(i) for i in tokenizer(list(rows["prompt"]))["input_ids"]])
            answer = np.array([len(i) for i in tokenizer(list(rows["completion"]))["input_ids"]])
            total = prompt + answer
            version = manifest["templates"][task]["version"]
            print(f"| {folder} | v{version} | {task} | {len(rows):,} | {prompt.mean():.0f} | {np.percentile(prompt, 95):.0f} "
                  f"| {answer.mean():.1f} | {total.mean():.0f} | {np.percentile(total, 95):.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
