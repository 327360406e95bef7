"""After a training run with kept checkpoints: small snapshots of some checkpoints, and valid-split
yes/no scores of the run's adapter and of each snapshot, within a time budget.

Used by eval/gpu_train.sh on a lent GPU machine, where a call brings back at most 16 MiB a file:
each snapshot holds a checkpoint's LoRA weights cast to bf16 (4.9 MB for r=8 on SmolLM2-135M)
beside the run's manifest, so that `llmrec evaluate --model SNAPSHOT` takes it; the newest
checkpoint's trainer_state.json (the valid losses along the run) is copied beside them. Scores
are `llmrec evaluate --split valid --tasks yes_no` over `--users` valid users (the LLM alone: the
run has no fusion), written to RUN.snapshots/curve.json. Nothing here reads the test split.

    python eval/gpu_snapshots.py --run RUN --data PREPARED --steps 200 800 --users 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from llmrec.training.adapter import MANIFEST
from llmrec.training.train import _cast_adapter, checkpoint_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curve import snapshot  # noqa: E402


def yes_no_valid(model: Path, data: str, users: int, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "llmrec", "evaluate", "--model", str(model), "--data", data, "--split", "valid",
                    "--tasks", "yes_no", "--users", str(users), "--k", "1,5,10", "--baselines", "", "--explain-users", "0",
                    "--no-progress", "--overwrite", "--out", str(out)], check=True)  # fmt: skip
    return json.loads((out / "report.json").read_text())["systems"]["llmrec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the run's adapter folder (OUT of llmrec train)")
    parser.add_argument("--data", required=True, help="the prepared folder it trained on")
    parser.add_argument("--steps", type=int, nargs="+", default=[], help="checkpoints to snapshot (optimizer steps)")
    parser.add_argument("--users", type=int, default=300, help="valid users for yes/no (seed 0; 0 = all)")
    parser.add_argument("--budget-s", type=float, default=120, help="start no evaluation after this many seconds")
    args = parser.parse_args()
    started = time.perf_counter()
    manifest = json.loads((args.run / MANIFEST).read_text())
    recipe, training = manifest["recipe"], manifest["training"]
    per_step = recipe["batch_size"] * recipe["grad_accum"] * int(training.get("processes", 1))
    checkpoints = checkpoint_dir(args.run)
    folder = args.run.parent / f"{args.run.name}.snapshots"
    folder.mkdir(exist_ok=True)
    # with early stopping the adapter holds the best checkpoint's weights, not the last step's
    best = training.get("best_checkpoint")
    models = [("final", args.run, int(best.split("-")[1]) * per_step if best else training["samples"])]
    for step in args.steps:
        if (checkpoints / f"checkpoint-{step}").is_dir():
            snap = snapshot(checkpoints / f"checkpoint-{step}", manifest, per_step, folder / f"checkpoint-{step}")
            _cast_adapter(snap, "bf16")  # as train saves a bf16 adapter
            models.append((f"checkpoint-{step}", snap, step * per_step))
    saved = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if saved and (saved[-1] / "trainer_state.json").is_file():
        shutil.copy2(saved[-1] / "trainer_state.json", folder / "trainer_state.json")
    rows = []
    for name, model, samples in models:
        if time.perf_counter() - started > args.budget_s:
            print(f"{name}: not scored (over the {args.budget_s:.0f} s budget)")
            continue
        result = yes_no_valid(model, args.data, args.users, folder / f"eval-{name}")
        rows.append({"model": name, "samples": samples, **{k: result[k] for k in ("auc", "uauc") if k in result}})
        print(rows[-1], flush=True)
        (folder / "curve.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
