"""Sweep: history length, learning rate and task mixture of the shipped recipe, on the valid split.

Run from the repository root after `make install`. Each history length needs its own prepared
folder (the prompts differ):

    for h in 5 10; do .venv/bin/llmrec prepare --out runs/sweep/ml-h$h --max-history $h; done
    .venv/bin/python eval/sweep_train.py --out runs/sweep --prepared 20=runs/ml-latest-small \
        --prepared 10=runs/sweep/ml-h10 --prepared 5=runs/sweep/ml-h5

Every configuration trains the shipped recipe for `--steps` optimizer steps with its overrides
(same seed), then scores the valid split with `llmrec evaluate --split valid`: yes/no AUC and user-AUC over
the yes/no samples of `--users` valid users (one seeded draw for every configuration: a forward
pass of a 250-token prompt takes about a second on one core), and the per-task valid losses of
the closing evaluation (`--eval-samples` a task). Configurations run `--parallel` at a time, one thread each (on 2 cores
two one-thread runs train more samples an hour than one two-thread run). Nothing here touches
the test split. Prints a Markdown table for eval/RESULTS.md and writes sweep.json in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SHIPPED_MIX = "{next_item: 1.0, yes_no: 0.5, rank: 0.5, explain: 0.5}"
YES_NO_MIX = "{next_item: 1.0, yes_no: 1.0, rank: 0.25, explain: 0.25}"
NEXT_MIX = "{next_item: 1.0, yes_no: 0.25, rank: 0.25, explain: 0.25}"

# (name, history, learning rate, task mixture)
GRID = [
    ("h20", 20, 3e-4, SHIPPED_MIX),
    ("h10", 10, 3e-4, SHIPPED_MIX),
    ("h5", 5, 3e-4, SHIPPED_MIX),
    ("h10-lr1e-3", 10, 1e-3, SHIPPED_MIX),
    ("h10-lr1e-4", 10, 1e-4, SHIPPED_MIX),
    ("h10-yes_no", 10, 3e-4, YES_NO_MIX),
    ("h10-next", 10, 3e-4, NEXT_MIX),
]


def llmrec() -> str:
    return str(Path(sys.executable).with_name("llmrec"))


def commands(args: argparse.Namespace, name: str, history: int, lr: float, mix: str) -> list[list[str]]:
    data = args.prepared[history]
    model = args.out / name
    train = [llmrec(), "train", "--data", data, "--out", str(model), "--recipe", "shipped", "--overwrite",
             "--no-progress", "--max-steps", str(args.steps), "--set", f"learning_rate={lr}",
             "--set", f"tasks={mix}", "--set", f"save_steps={args.steps}",
             "--set", f"max_eval_samples={args.eval_samples}"]  # fmt: skip
    score = [llmrec(), "evaluate", "--model", str(model), "--data", data, "--split", "valid", "--tasks", "yes_no",
             "--users", str(args.users), "--baselines", "", "--explain-users", "0", "--overwrite", "--no-progress",
             "--out", str(args.out / f"{name}-valid")]  # fmt: skip
    # what an interrupted sweep already trained or scored is not done again
    if (args.out / f"{name}-valid" / "report.json").is_file():
        return []
    return [score] if (model / "llmrec_adapter.json").is_file() else [train, score]


def run(args: argparse.Namespace, config: tuple) -> subprocess.Popen:
    name = config[0]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    script = " && ".join(" ".join(f"'{part}'" for part in command) for command in commands(args, *config)) or "true"
    log = open(args.out / f"{name}.log", "w")
    return subprocess.Popen(["bash", "-c", script], stdout=log, stderr=subprocess.STDOUT, env=env)


def valid_users(args: argparse.Namespace) -> set[str]:
    """The --users valid users every configuration is scored on (evaluate's own seeded draw)."""
    from llmrec.data import prepared
    from llmrec.evaluation.evaluate import select_users

    _, interactions, _ = prepared.read_tables(next(iter(args.prepared.values())))
    return set(select_users(interactions, "valid", args.users, 0, (0, 1)))


def yes_no_scores(folder: Path, users: set[str]) -> dict:
    """AUC and user-AUC of llmrec's valid yes/no answers for ``users`` (a run may have scored more)."""
    from llmrec.evaluation.metrics import auc_only

    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["system"] == "llmrec" and r["task"] == "yes_no" and r["user"] in users]
    return {**auc_only([r["label"] for r in rows], [r["score"] for r in rows], [r["user"] for r in rows]),
            "samples": len(rows)}  # fmt: skip


def result(args: argparse.Namespace, users: set[str], name: str, history: int, lr: float, mix: str) -> dict:
    manifest = json.loads((args.out / name / "llmrec_adapter.json").read_text())
    report = yes_no_scores(args.out / f"{name}-valid", users)
    training = manifest["training"]
    losses = {task: round(m["loss"], 4) for task, m in manifest["metrics"]["valid"].items()}
    return {"name": name, "history": history, "learning_rate": lr, "tasks": mix, "samples": training["samples"],
            "train_seconds": training["seconds"], "samples_per_second": training["samples_per_second"],
            "valid_loss": losses, "valid_auc": report["auc"], "valid_uauc": report["uauc"],
            "valid_yes_no_samples": report["samples"]}  # fmt: skip


def table(rows: list[dict]) -> str:
    tasks = ["next_item", "yes_no", "rank", "explain"]
    head = ("| config | history | lr | tasks | samples | samples/s (1 thread) | valid yes/no AUC | user-AUC | "
            + " | ".join(f"loss {t}" for t in tasks) + " |")  # fmt: skip
    lines = [head, "|" + "---|" * (8 + len(tasks))]
    for r in rows:
        loss = " | ".join(f"{r['valid_loss'].get(t, float('nan')):.3f}" for t in tasks)
        lines.append(f"| {r['name']} | {r['history']} | {r['learning_rate']:g} | {r['tasks']} | {r['samples']} | "
                     f"{r['samples_per_second']:.3f} | {r['valid_auc']:.3f} | {r['valid_uauc']:.3f} | {loss} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prepared", action="append", required=True, help="HISTORY=FOLDER, once per history length")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval-samples", type=int, default=64, help="valid samples per task for the losses")
    parser.add_argument("--users", type=int, default=300, help="valid users scored (a seeded draw, the same for all)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    args = parser.parse_args()
    args.prepared = {int(k): v for k, v in (p.split("=", 1) for p in args.prepared)}
    args.out.mkdir(parents=True, exist_ok=True)
    grid = [c for c in GRID if (not args.only or c[0] in args.only) and c[1] in args.prepared]
    pending, running, failed = list(grid), [], []
    while pending or running:
        while pending and len(running) < args.parallel:
            config = pending.pop(0)
            running.append((config, run(args, config), time.time()))
        time.sleep(5)
        for item in [r for r in running if r[1].poll() is not None]:
            running.remove(item)
            config, proc, start = item
            print(f"{config[0]}: exit {proc.returncode} after {time.time() - start:.0f} s", file=sys.stderr, flush=True)
            if proc.returncode:
                failed.append(config[0])
    users = valid_users(args)
    rows = [result(args, users, *c) for c in grid if c[0] not in failed]
    path = args.out / "sweep.json"
    old = json.loads(path.read_text()) if path.exists() else []
    merged = {r["name"]: r for r in old + rows}
    path.write_text(json.dumps(list(merged.values()), indent=1))
    print(table(list(merged.values())))
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (see their logs in {args.out})")


if __name__ == "__main__":
    main()
