"""Writing outputs whole or not at all: build in a temporary sibling, then rename into place."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmrec.errors import LlmrecError


def check_writable(out: Path, overwrite: bool) -> None:
    """Fail early, before any work, when ``out`` cannot be (re)placed: it is a file, it is a
    non-empty folder without ``overwrite``, or its parent cannot be created or written."""
    try:
        _check_writable(Path(out), overwrite)
    except OSError as exc:  # e.g. a parent folder this user may not enter
        raise LlmrecError(f"{out}: cannot write there ({exc.strerror})") from None


def _check_writable(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise LlmrecError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LlmrecError(f"{out}: folder exists and is not empty (pass --overwrite to replace it)")
    parent = out.parent
    blocker = next((p for p in [parent, *parent.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise LlmrecError(f"{out}: cannot be created: {blocker} is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LlmrecError(f"{out}: cannot create {parent} ({exc.strerror})") from None
    try:  # a real write: permissions, read-only mounts and full disks all answer here
        tempfile.TemporaryDirectory(prefix=f".{out.name}.probe-", dir=parent).cleanup()
    except OSError as exc:
        raise LlmrecError(f"{out}: cannot write in {parent} ({exc.strerror})") from None


def _owner_alive(folder: Path) -> bool:
    """Whether the process that made a temporary folder of ours (pid in its name) still runs."""
    match = re.search(r"\.(?:tmp|old)-(\d+)-", folder.name)
    if match is None:  # made by an llmrec that did not record its pid: stale after a day
        return time.time() - folder.stat().st_mtime < 86400
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(out: Path) -> list[Path]:
    """Delete the temporary siblings of ``out`` left by a killed run (``.OUT.tmp-*``, ``.OUT.old-*``)."""
    removed = []
    for folder in [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]:
        if folder.is_dir() and not _owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """While the block runs, SIGTERM raises SystemExit, so ``finally`` clauses still clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def atomic_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` only if the block succeeds.

    The temporary folder sits beside ``out`` (same file system, so the rename is atomic), is named
    after this process, and is removed on any error or SIGTERM, so ``out`` never holds a
    half-written result; folders a killed run left behind are removed by the next one.
    """
    out = Path(out)
    check_writable(out, overwrite)
    remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result should not be
    try:
        with _terminate_as_exit():
            yield tmp
            if out.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
                os.replace(out, trash / "old")
                os.replace(tmp, out)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a temporary file beside it: never half-written."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` through a temporary file beside it: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Hex SHA-256 of every file below ``folder``, by relative path (sorted)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in skip)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}
