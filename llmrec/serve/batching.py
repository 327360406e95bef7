"""Micro-batching: concurrent requests gathered into one model call, on one model thread.

Handlers (the event loop) put jobs on a bounded queue and await their futures. One thread takes
a job, waits up to ``max_wait_ms`` for up to ``max_batch - 1`` more, groups them by what must be
equal to share a call (the task and its parameters: ``k``, mode, ...), and answers each group
with one batched call. A group whose batched call fails is answered request by request, so one
bad request fails alone. A full queue refuses new work at once (the service answers 503 with
Retry-After) instead of letting latency grow without bound; a job whose caller stopped waiting
(its timeout passed) is skipped when its turn comes.

The model runs on this one thread only: torch already uses every core for one call, and the
backends are not made for concurrent calls.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

# (payloads of one group) -> one result per payload, same order; an Exception as a result is that request's error
BatchFunction = Callable[[Sequence[Any]], Sequence[Any]]


class Overloaded(Exception):
    """The queue is full: the caller should come back later."""


@dataclass(eq=False)
class Job:
    kind: str
    key: Hashable
    payload: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers jobs into batched calls of ``functions[kind]`` on one worker thread."""

    def __init__(self, functions: dict[str, BatchFunction], max_batch: int = 8, max_wait_ms: float = 5.0,
                 max_queue: int = 256, on_batch: Callable[[str, int], None] | None = None) -> None:  # fmt: skip
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch >= 1, max_wait_ms >= 0 and max_queue >= 1")
        self.functions = functions
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.on_batch = on_batch
        self._thread = threading.Thread(target=self._run, name="llmrec-model", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Answer what is queued (waiting up to ``timeout`` for room to say stop), then stop the worker."""
        if self._started:
            try:
                self.queue.put(None, timeout=timeout)
            except queue.Full:
                pass  # the thread is a daemon: it ends with the process
            self._thread.join(timeout)
            self._started = False

    def alive(self) -> bool:
        """Whether the model thread runs (a request put on the queue will be answered)."""
        return self._thread.is_alive()

    def depth(self) -> int:
        return self.queue.qsize()

    async def submit(self, kind: str, key: Hashable, payload: Any, timeout: float | None = None) -> Any:
        """The result for ``payload``; raises its error, ``Overloaded``, or ``TimeoutError``."""
        loop = asyncio.get_running_loop()
        job = Job(kind, key, payload, loop, loop.create_future())
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise Overloaded from None
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        finally:
            if not job.future.done():  # the caller gave up: the worker skips it
                job.future.cancel()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self.queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    job = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            try:
                self._answer(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting on a dead thread
                for job in batch:
                    _deliver(job, exc)
                raise

    def _answer(self, batch: list[Job]) -> None:
        groups: dict[tuple[str, Hashable], list[Job]] = {}
        for job in batch:
            if not job.future.cancelled():
                groups.setdefault((job.kind, job.key), []).append(job)
        for (kind, _), jobs in groups.items():
            if self.on_batch is not None:
                self.on_batch(kind, len(jobs))
            results = self._call(kind, [j.payload for j in jobs])
            for job, result in zip(jobs, results):
                _deliver(job, result)

    def _call(self, kind: str, payloads: list[Any]) -> list[Any]:
        function = self.functions[kind]
        try:
            results = list(function(payloads))
            if len(results) != len(payloads):
                raise RuntimeError(f"{kind}: {len(results)} results for {len(payloads)} requests")
            return results
        except Exception as exc:
            if len(payloads) == 1:
                return [exc]
        out = []
        for payload in payloads:  # one by one: the bad request fails alone
            try:
                [result] = function([payload])
                out.append(result)
            except Exception as exc:
                out.append(exc)
        return out


def _deliver(job: Job, result: Any) -> None:
    try:
        job.loop.call_soon_threadsafe(_settle, job.future, result)
    except RuntimeError:  # the caller's event loop is closed: nobody is waiting
        pass


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
