"""Benchmark: wall time and peak memory of `llmrec prepare` on the real data sets.

Run from the repository root after `make install`:

    .venv/bin/python eval/bench_prepare.py --out /tmp/bench-prepare

Each data set is prepared in its own process (default options, all four tasks), so the peak
resident memory is that run's alone. The samples stage (rendering, token counting, negatives)
is timed on its own, from the manifest's ``stages``; users/s is over that stage. A synthetic log
of any size: ``python eval/make_amazon.py --out runs/amazon`` (50k users), then
``--data amazon-50k=runs/amazon``. Prints a Markdown table for eval/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "ml-latest-small": "ml-latest-small",
    "lastfm-2k": str(ROOT.parent / "shared" / "data" / "lastfm-2k"),
    "ml-100k (RecBole atomic)": "ml-100k",
}


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MiB of one command run in its own process (exits if it fails)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return seconds, usage.ru_maxrss / 1024


def run(data: str, out: Path) -> tuple[float, float, dict]:
    """Seconds, peak RSS in MiB, and the manifest of one prepare run."""
    # the installed console script: `python -m llmrec` from the repository root would import the source tree
    cmd = [str(Path(sys.executable).parent / "llmrec"), "prepare", "--data", data, "--out", str(out), "--overwrite",
           "--no-progress"]  # fmt: skip
    seconds, rss = timed(cmd)
    return seconds, rss, json.loads((out / "manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-prepare"))
    parser.add_argument("--data", nargs="+", metavar="NAME=PATH", default=[],
                        help="data sets to time instead of the real ones, e.g. amazon-50k=runs/amazon "
                             "(from eval/make_amazon.py)")  # fmt: skip
    args = parser.parse_args()
    datasets = dict(d.split("=", 1) for d in args.data) if args.data else DATASETS
    print("| data | users | items | interactions | samples (all tasks) | samples stage s | users/s (samples) "
          "| wall s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, data in datasets.items():
        seconds, rss, m = run(data, args.out / name.split()[0])
        samples = sum(sum(c.values()) for c in m["samples"]["counts"].values())
        stage = m["stages"]["samples"]
        print(
            f"| {name} | {m['users']:,} | {m['items']:,} | {m['interactions']:,} | {samples:,} | {stage:.1f} "
            f"({m['stages']['samples_workers']} workers) | {m['users'] / stage:,.0f} | {seconds:.1f} | {rss:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
