"""The service's feedback log: one JSON line per event, on disk before the request is answered.

Why JSON lines and not SQLite: ``llmrec prepare --data feedback.jsonl`` reads the file as it is
(its fields are the generic format's roles: ``user``, ``item``, ``title``, ``timestamp``,
``rating``), appending is one ``write`` of one line on a file opened with ``O_APPEND`` (whole
lines even with several server processes), and ``fsync`` before the 200 makes the event survive a
``kill -9`` and a power cut alike. SQLite in WAL mode would be as durable but needs an export
step before ``prepare`` can read it. A last line cut short by a crash mid-write (only a power cut
can do that: a killed process leaves what ``write`` handed the kernel) is dropped when the log
is next opened.

``rating`` turns events into the ratings ``prepare`` understands (its default like threshold is
4): like and purchase 5, click 4 (liked), dislike 1, impression 0 (seen and not taken: a weak
negative). ``event`` keeps the original kind for anyone who wants another mapping.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError

EVENTS = ("impression", "click", "purchase", "like", "dislike")
RATINGS = {"impression": 0.0, "click": 4.0, "purchase": 5.0, "like": 5.0, "dislike": 1.0}


class FeedbackLog:
    """Append-only, fsynced JSON lines; safe across threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LlmrecError(f"{self.path}: cannot open the feedback log ({exc.strerror})") from None
        self._drop_partial_line()
        parent = os.open(self.path.parent, os.O_RDONLY)
        try:  # the file's name is durable too
            os.fsync(parent)
        finally:
            os.close(parent)

    def _drop_partial_line(self) -> None:
        """Cut the file after its last newline (a line a crash cut short), however long that line."""
        with self._locked():
            size = os.fstat(self._fd).st_size
            keep, chunk = size, 65536
            with self.path.open("rb") as fh:
                while keep > 0:
                    start = max(0, keep - chunk)
                    fh.seek(start)
                    block = fh.read(keep - start)
                    if keep == size and block.endswith(b"\n"):
                        return  # whole lines: nothing to cut
                    cut = block.rfind(b"\n")
                    if cut >= 0:
                        keep = start + cut + 1
                        break
                    keep = start
            if keep != size:
                os.truncate(self.path, keep)
                os.fsync(self._fd)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads, then other processes (``--workers``), one at a time."""
        with self._lock:
            if self._fd < 0:
                raise OSError(f"{self.path}: the feedback log is closed (the server is stopping)")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def append(self, event: dict[str, Any]) -> None:
        """Write one event and fsync it; returns only once it is on disk."""
        line = (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._locked():
            written = os.write(self._fd, line)
            if written != len(line):  # a full disk: leave no half line behind
                os.truncate(self.path, os.fstat(self._fd).st_size - written)
                raise OSError(f"{self.path}: short write")
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file once no append is in progress; later appends fail."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def event_record(user: str, item_id: str, title: str, event: str, timestamp: float, context: dict | None,
                 request_id: str) -> dict[str, Any]:  # fmt: skip
    """One log line: the generic format's roles first, then what the service adds."""
    record: dict[str, Any] = {"user": user, "item": item_id, "title": title, "timestamp": timestamp,
                              "rating": RATINGS[event], "event": event, "request_id": request_id}  # fmt: skip
    if context:
        record["context"] = context
    return record
