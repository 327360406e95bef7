"""Load benchmark of `llmrec serve` on loopback: requests/s and latency percentiles per endpoint,
concurrency and micro-batching setting.

Run from the repository root after `make install` (nothing else should run on the machine):

    .venv/bin/python eval/bench_serve.py --out runs/bench-serve

For each batching setting (`on`: --max-batch 8, `off`: --max-batch 1) it starts one server on
127.0.0.1 (no keys: --insecure-no-auth on loopback), waits for /readyz, then for each task and
concurrency sends `--requests` requests (or stops after `--seconds`), `concurrency` at a time,
and records each request's latency (errors included: a timed-out one counts its wait);
requests/s counts the answered (200) ones only. Requests are real histories: the last 10
events of users of the served data (seeded draw); yes/no targets are items those users did not
see. The server keeps its default --timeout-s (120 s): beyond that a request gets 504. Prints a
Markdown table and writes it with the raw numbers to OUT/bench_serve.json. With `--direct` it also
times the same yes/no requests through the Python API in its own process, in batches of 1 and 8
(no HTTP, no queue): how much batching saves inside the model itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

TASKS = {
    "predict": ("/v1/predict", None),
    "recommend-llm": ("/v1/recommend", "llm"),
    "recommend-generate": ("/v1/recommend", "generate"),
    "recommend-rerank": ("/v1/recommend", "rerank"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: argparse.Namespace, max_batch: int, folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [str(Path(sys.executable).with_name("llmrec")), "serve", "--insecure-no-auth", "--port", str(port),
            "--max-batch", str(max_batch), "--max-queue", "1024", "--feedback", str(folder / "feedback.jsonl")]  # fmt: skip
    argv += ["--model", args.model] if args.model else []
    argv += ["--data", args.data] if args.data else []
    log = (folder / f"server-{max_batch}.log").open("w")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: see {log.name}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server was not ready in 10 minutes")


def request_bodies(args: argparse.Namespace, n: int) -> dict[str, list[dict]]:
    """Real histories from the served data (the last 10 events of seeded-random users)."""
    from llmrec.data import prepared

    _, interactions, _ = prepared.load(args.data)
    rng = np.random.default_rng(args.seed)
    by_user = {u: g.sort_values("seq")["item_id"].astype(str).tolist() for u, g in interactions.groupby("user_id")}
    users = rng.choice(sorted(by_user), size=n, replace=True)
    items = interactions["item_id"].astype(str).unique()
    bodies: dict[str, list[dict]] = {task: [] for task in TASKS}
    for user in users:
        history = by_user[user][-10:]
        target = next(i for i in rng.choice(items, 50) if i not in set(by_user[user]))
        bodies["predict"].append({"history": history, "target": str(target)})
        for task, (_, mode) in TASKS.items():
            if mode is not None:
                bodies[task].append({"history": history, "k": 10, "mode": mode})
    return bodies


async def load(url: str, path: str, bodies: list[dict], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    todo = iter(bodies)
    stop_at = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for body in todo:
            if time.perf_counter() > stop_at:
                return
            started = time.perf_counter()
            r = await client.post(url + path, json=body)
            latencies.append(time.perf_counter() - started)
            errors += r.status_code != 200

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    # throughput counts answered requests only: a 503/504 is not served work
    return {"requests": len(latencies), "errors": errors, "seconds": round(wall, 2),
            "requests_per_s": round((len(latencies) - errors) / wall, 3),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)}}  # fmt: skip


def direct(args: argparse.Namespace, bodies: list[dict], sizes: list[int]) -> list[dict]:
    """yes/no through the Python API in this process (no HTTP, no queue): seconds per request when
    ``predict_yes_no_many`` gets batches of each size. Shows what batching can save in the model."""
    from llmrec.decoding.recommender import Recommender

    rec = Recommender.load(args.model, args.data)
    requests = [(b["history"], b["target"], []) for b in bodies]
    rec.predict_yes_no_many(requests[:2])  # warm-up
    rows = []
    for size in sizes:
        started = time.perf_counter()
        for i in range(0, len(requests), size):
            rec.predict_yes_no_many(requests[i : i + size])
        wall = time.perf_counter() - started
        rows.append({"batch": size, "requests": len(requests), "seconds": round(wall, 2),
                     "requests_per_s": round(len(requests) / wall, 3)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="as llmrec serve --model (default: the shipped adapter)")
    parser.add_argument("--data", help="as llmrec serve --data (default: embedded ml-latest-small)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--batching", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--requests", type=int, default=64, help="requests per cell (at most)")
    parser.add_argument("--seconds", type=float, default=120, help="a cell stops sending after this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--direct", action="store_true",
                        help="also time predict through the Python API in this process, batches of 1 and 8")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bodies = request_bodies(args, args.requests)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for batching in args.batching:
            process, url = start(args, 8 if batching == "on" else 1, Path(tmp))
            try:
                for task in args.tasks:
                    path, _ = TASKS[task]
                    asyncio.run(load(url, path, bodies[task][:2], 1, args.seconds))  # warm-up
                    for c in args.concurrency:
                        row = {"task": task, "batching": batching, "concurrency": c,
                               **asyncio.run(load(url, path, bodies[task], c, args.seconds))}  # fmt: skip
                        rows.append(row)
                        print(json.dumps(row), flush=True)
            finally:
                process.terminate()
                process.wait()
    direct_rows = direct(args, bodies["predict"], [1, 8]) if args.direct else []
    (args.out / "bench_serve.json").write_text(
        json.dumps({"rows": rows, "direct": direct_rows, "cpu_count": os.cpu_count()}, indent=2))
    print("\n| task | micro-batching | concurrency | requests | errors | requests/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['task']} | {r['batching']} | {r['concurrency']} | {r['requests']} | {r['errors']} | "
              f"{r['requests_per_s']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} |")
    if direct_rows:
        print("\n| predict, Python API | batch | requests | seconds | requests/s |\n|---|---:|---:|---:|---:|")
        for r in direct_rows:
            print(f"| in process | {r['batch']} | {r['requests']} | {r['seconds']:.1f} | {r['requests_per_s']:.2f} |")


if __name__ == "__main__":
    main()
