"""``llmrec serve``'s durability and shutdown (kill -9, SIGTERM, overload), each on a server of
its own, and the parts of the service that are tested without one (batcher, feedback log)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import Server

# durability and shutdown: each on a server of its own

@pytest.mark.slow
def test_feedback_survives_kill_9_and_prepare_reads_it(toy_model: Path, shop: Path, keys: dict, tmp_path: Path):
    from llmrec.data import load

    s = Server(toy_model, shop, keys, tmp_path)
    try:
        events = [("u1", "i3", "click"), ("u1", "i4", "like"), ("u2", "i3", "dislike"), ("u2", "i5", "purchase")]
        for n, (user, item, event) in enumerate(events):
            r = s.post("/v1/feedback", {"user": user, "item": item, "event": event, "timestamp": 1000 + n,
                                        "context": {"page": "home"}}, keys["feedback"])  # fmt: skip
            assert r.status_code == 200, r.text
        s.process.send_signal(signal.SIGKILL)
        s.process.wait()
    finally:
        s.stop()
    lines = [json.loads(line) for line in s.feedback.read_text().splitlines()]
    assert [(x["user"], x["item"], x["event"]) for x in lines] == events
    raw = load(s.feedback)  # as `llmrec prepare --data feedback.jsonl` reads it
    assert len(raw.interactions) == 4 and raw.interactions["rating"].tolist() == [4.0, 5.0, 1.0, 5.0]
    assert set(raw.catalog["title"]) == {"Product number 3", "Product number 4", "Product number 5"}


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight(toy_model: Path, shop: Path, keys: dict, tmp_path: Path):
    # a lone request waits 4 s for a partner in its batch: it is in flight when the SIGTERM comes
    s = Server(toy_model, shop, keys, tmp_path, "--max-batch", "2", "--max-wait-ms", "4000")
    try:
        result = {}

        def slow():
            started = time.perf_counter()
            result["r"] = s.post("/v1/predict", {"history": ["i1", "i2"], "target": "i3"}, keys["read"])
            result["s"] = time.perf_counter() - started

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(1.0)
        s.process.send_signal(signal.SIGTERM)
        thread.join(120)
        assert result["r"].status_code == 200 and 0 <= result["r"].json()["p_yes"] <= 1
        assert result["s"] >= 3.5  # answered after the SIGTERM, not refused by it
        # uvicorn re-raises the signal once shut down, so the exit status says SIGTERM
        assert s.process.wait(60) in (0, -signal.SIGTERM)
        assert "Shutting down" in s.log.read_text()
    finally:
        s.stop()


@pytest.mark.slow
def test_overload_gives_503_and_slow_answers_504(toy_model: Path, shop: Path, keys: dict, tmp_path: Path):
    # twenty generated explanations take the toy model over a second: longer than the timeout,
    # and far longer than a burst takes to arrive; the queue holds one request
    s = Server(toy_model, shop, keys, tmp_path, "--max-queue", "1", "--max-batch", "1", "--timeout-s", "0.5")
    body = {"history": ["i1", "i2"], "k": 20, "explain": True}
    try:
        assert s.post("/v1/recommend", body, keys["read"]).status_code == 504

        async def burst():
            headers = {"Authorization": f"Bearer {keys['read']}"}
            async with httpx.AsyncClient(timeout=120) as client:
                return await asyncio.gather(*[client.post(s.url + "/v1/recommend", json=body, headers=headers)
                                              for _ in range(8)])  # fmt: skip

        answers = asyncio.run(burst())
        codes = [r.status_code for r in answers]
        assert codes.count(503) >= 4 and codes.count(504) >= 1 and set(codes) <= {503, 504}, codes
        assert all(r.headers["retry-after"] == "1" for r in answers if r.status_code == 503)
        assert httpx.get(s.url + "/readyz").status_code == 200  # still serving
    finally:
        s.stop()


# the parts on their own

def test_a_failing_request_fails_alone_in_its_batch():
    from llmrec.serve.batching import MicroBatcher

    calls = []

    def double(payloads):
        calls.append(len(payloads))
        if any(p < 0 for p in payloads):
            raise ValueError("negative")
        return [2 * p for p in payloads]

    batcher = MicroBatcher({"double": double}, max_batch=8, max_wait_ms=200)
    batcher.start()

    async def main():
        return await asyncio.gather(*[batcher.submit("double", None, p) for p in (1, 2, -3, 4)], return_exceptions=True)

    try:
        out = asyncio.run(main())
    finally:
        batcher.stop()
    assert out[:2] == [2, 4] and isinstance(out[2], ValueError) and out[3] == 8
    assert calls[0] == 4  # one call for the four, then one each


def test_feedback_is_fsynced_before_append_returns(tmp_path: Path, monkeypatch):
    from llmrec.serve import feedback

    log = feedback.FeedbackLog(tmp_path / "f.jsonl")
    calls = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(feedback.os, "write", lambda fd, data: calls.append("write") or real_write(fd, data))
    monkeypatch.setattr(feedback.os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    log.append(feedback.event_record("u", "i1", "T", "like", 1.0, None, "r1"))
    assert calls == ["write", "fsync"]
    log.close()
    with pytest.raises(OSError, match="closed"):
        log.append(feedback.event_record("u", "i1", "T", "like", 1.0, None, "r2"))


def test_a_torn_last_line_is_cut_however_long(tmp_path: Path):
    from llmrec.serve.feedback import FeedbackLog

    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b'{"b": "' + b"x" * 200_000)  # a crash mid-write of a long line
    FeedbackLog(path).close()
    assert path.read_bytes() == b'{"a": 1}\n'
    path.write_bytes(b"y" * 150_000)
    FeedbackLog(path).close()
    assert path.read_bytes() == b""


def test_serve_module_imports_stay_light():
    code = "import sys, llmrec.cli; print('fastapi' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True)
    assert out.stdout.split() == ["False", "False"]
