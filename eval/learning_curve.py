"""Learning curve: valid-split quality of a training run's checkpoints against the samples seen.

Run from the repository root after `make install`, on a run trained with `--keep-checkpoints`
(checkpoints in OUT.checkpoints, one every `save_steps`, `save_total_limit: null` to keep them all):

    .venv/bin/python eval/learning_curve.py --run runs/shipped-v2 --data runs/ml-h10 --out runs/curve

Each checkpoint's LoRA weights are put beside the run's adapter manifest (the finished adapter's,
or `--manifest` while the run is still going: any adapter trained on the same prepared data and
recipe) and scored with `llmrec evaluate --split valid`: yes/no AUC over every valid yes/no
sample, rank NDCG@5, and next-item NDCG@10 over `--next-users` users (0 skips it: beam search
over the whole catalogue costs seconds a user on a CPU). The base model without an adapter is
the curve's first point. Nothing here reads the test split. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def llmrec() -> str:
    return str(Path(sys.executable).with_name("llmrec"))


def snapshot(checkpoint: Path, manifest: dict, per_step: int, folder: Path) -> Path:
    """An adapter folder holding a checkpoint's weights and the run's manifest (its step count)."""
    step = int(checkpoint.name.split("-")[1])
    folder.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        shutil.copy2(checkpoint / name, folder / name)
    manifest = json.loads(json.dumps(manifest))
    manifest["training"] = {"steps": step, "samples": step * per_step, "snapshot_of": str(checkpoint)}
    (folder / "llmrec_adapter.json").write_text(json.dumps(manifest, indent=2))
    return folder


def evaluate(model: str, data: str, out: Path, tasks: str, users: int) -> dict:
    if not (out / "report.json").is_file():
        subprocess.run([llmrec(), "evaluate", "--model", model, "--data", data, "--split", "valid", "--tasks", tasks,
                        "--users", str(users), "--k", "1,5,10", "--baselines", "", "--explain-users", "0", "--no-progress",
                        "--overwrite", "--out", str(out)], check=True)  # fmt: skip
    return json.loads((out / "report.json").read_text())["systems"]["llmrec"]


def score(args: argparse.Namespace, model: str, name: str) -> dict:
    """``--tasks`` (yes/no and rank) over ``--users`` valid users (0: all); next-item over --next-users of them."""
    result = evaluate(model, args.data, args.out / f"{name}-valid", args.tasks, args.users)
    if args.next_users:
        result.update(evaluate(model, args.data, args.out / f"{name}-valid-next", "next_item", args.next_users))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the adapter folder of the run (OUT)")
    parser.add_argument("--data", required=True, help="the prepared folder the run trained on")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, help="an adapter whose manifest stands in while the run goes on")
    parser.add_argument("--next-users", type=int, default=0, help="valid users for next-item NDCG@10 (0: skip)")
    parser.add_argument("--every", type=int, default=1, help="score every Nth checkpoint")
    parser.add_argument("--steps", type=int, nargs="+", help="score only these checkpoints (optimizer steps)")
    parser.add_argument("--tasks", default="yes_no,rank", help="tasks over the valid users (default: yes_no,rank)")
    parser.add_argument("--users", type=int, default=0, help="valid users drawn with seed 0 (default 0: all)")
    args = parser.parse_args()
    source = args.manifest or args.run
    manifest = json.loads((source / "llmrec_adapter.json").read_text())
    recipe = manifest["recipe"]
    # samples an optimizer step: batch x accumulation x processes (a two-process run takes 2 batches a step)
    per_step = recipe["batch_size"] * recipe["grad_accum"] * int(manifest.get("training", {}).get("processes", 1))
    checkpoints = sorted(args.run.parent.glob(f"{args.run.name}.checkpoints/checkpoint-*"),
                         key=lambda p: int(p.name.split("-")[1]))[:: args.every]  # fmt: skip
    if args.steps:
        checkpoints = [c for c in checkpoints if int(c.name.split("-")[1]) in set(args.steps)]
    rows = [{"samples": 0, **score(args, manifest["base_model"]["name"], "base")}]
    for checkpoint in checkpoints:
        folder = snapshot(checkpoint, manifest, per_step, args.out / checkpoint.name)
        rows.append({"samples": int(checkpoint.name.split("-")[1]) * per_step, **score(args, str(folder), checkpoint.name)})
    (args.out / "curve.json").write_text(json.dumps(rows, indent=1))
    print("| samples seen | valid yes/no AUC | valid user-AUC | valid rank NDCG@5 | valid next-item NDCG@10 |")
    print("|---|---|---|---|---|")
    for r in rows:
        shown = [f"{r[m]:.3f}" if m in r else "-" for m in ("auc", "uauc", "rank_ndcg@5")]
        ndcg = f"{r['ndcg@10']:.4f}" if "ndcg@10" in r else "-"
        print(f"| {r['samples']} | {' | '.join(shown)} | {ndcg} |")


if __name__ == "__main__":
    main()
