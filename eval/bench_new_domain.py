"""Benchmark: a new domain end to end on a synthetic Amazon-format log (issue 16).

Run from the repository root after `make install` (each step in its own process, so its peak
RSS is its own; a step whose output exists is skipped, so a cut-short run resumes):

    .venv/bin/python eval/bench_new_domain.py --out runs/new-domain

1. ``eval/make_amazon.py`` (50,000 users, 17,000 items, seeded) into OUT/amazon;
2. ``llmrec prepare --data OUT/amazon`` into OUT/prepared;
3. ``llmrec train --recipe quick`` into OUT/adapter (the tasks the data supports);
4. ``llmrec evaluate --users 100 --k 1,5,10,20`` with popularity, item-kNN and SASRec into OUT/report.

Prints a Markdown table (wall time, peak RSS, and for evaluate the next-item latency p50/p95).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_prepare import timed

HERE = Path(__file__).resolve().parent


def steps(out: Path, users: int, items: int, eval_users: int) -> list[tuple[str, Path, list[str]]]:
    llmrec = [str(Path(sys.executable).parent / "llmrec")]  # installed; `-m llmrec` from the root imports the source tree
    return [
        ("make_amazon", out / "amazon", [sys.executable, str(HERE / "make_amazon.py"), "--out", str(out / "amazon"),
                                         "--users", str(users), "--items", str(items)]),
        ("prepare", out / "prepared", [*llmrec, "prepare", "--data", str(out / "amazon"), "--out",
                                       str(out / "prepared"), "--no-progress"]),
        ("train (quick)", out / "adapter", [*llmrec, "train", "--data", str(out / "prepared"), "--out",
                                            str(out / "adapter"), "--recipe", "quick", "--no-progress"]),
        ("evaluate", out / "report", [*llmrec, "evaluate", "--data", str(out / "prepared"), "--model",
                                      str(out / "adapter"), "--users", str(eval_users), "--k", "1,5,10,20",
                                      "--out", str(out / "report"), "--no-progress"]),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/new-domain"))
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=17_000)
    parser.add_argument("--eval-users", type=int, default=100)
    args = parser.parse_args()
    rows = []
    for name, output, cmd in steps(args.out, args.users, args.items, args.eval_users):
        if output.exists():
            print(f"{name}: {output} exists, skipped", file=sys.stderr)
            continue
        seconds, rss = timed(cmd)
        rows.append((name, seconds, rss))
        print(f"{name}: {seconds:.0f} s, peak RSS {rss:,.0f} MiB", file=sys.stderr, flush=True)
    print("| step | wall s | peak RSS MiB |")
    print("|---|---:|---:|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.0f} | {rss:,.0f} |")
    report = args.out / "report" / "report.json"
    if report.is_file():
        llm = json.loads(report.read_text())["systems"].get("llmrec", {})
        if "latency_p50_s" in llm:
            print(f"\nllmrec next-item latency p50 {llm['latency_p50_s']:.1f} s, p95 {llm['latency_p95_s']:.1f} s "
                  f"(p95/p50 {llm['latency_p95_s'] / llm['latency_p50_s']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
