"""``llmrec predict``: a JSONL file of requests in, a JSONL file of answers out, resumable.

Request fields (one JSON object a line):

- ``id`` (string or number, unique): echoed in the answer; ids already in the output are skipped.
- ``history``: item ids or titles, oldest first (``liked`` is accepted as a synonym).
- ``disliked`` (yes_no, optional): items the user disliked.
- ``target``: the item to judge (yes_no) or to explain (explain).
- ``candidates``: the items to order (rank).
- ``k`` (next_item, optional): how many items (default: ``--k``; capped as ``Recommender.recommend`` caps it).

History items outside the catalogue follow ``--unknown-items`` (``keep``: in the prompt as text,
the default; ``drop``; ``error``: the request is skipped); an answer counts them in
``unknown_history``. A yes_no ``target`` outside the catalogue is judged from its text (``keep``).

A bad line is reported on stderr with its line number and skipped; the job goes on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError, shorten

PREDICT_TASKS = ("next_item", "yes_no", "explain", "rank")
_NEEDS = {"yes_no": "target", "explain": "target", "rank": "candidates"}


@dataclass
class Request:
    line: int
    id: str
    body: dict[str, Any]


def read_requests(path: Path, task: str) -> Iterator[Request | tuple[int, str]]:
    """Requests, or (line number, problem) for lines that cannot be one."""
    if not path.is_file():
        raise LlmrecError(f"{path}: no such file")
    seen: set[str] = set()
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, f"not UTF-8 text (byte {exc.start + 1})"
                continue
            if not text.strip():
                continue
            problem, body = _check(text, task)
            if problem is None and str(body["id"]) in seen:
                problem = f"id '{shorten(body['id'])}' appears twice"
            if problem is not None:
                yield number, problem
                continue
            seen.add(str(body["id"]))
            yield Request(number, str(body["id"]), body)


def _check(text: str, task: str) -> tuple[str | None, dict[str, Any]]:
    """(problem or None, the request body with ``history`` filled in)."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg})", {}
    if not isinstance(body, dict):
        return "a request is a JSON object", {}
    if "id" not in body or not isinstance(body["id"], (str, int)) or isinstance(body["id"], bool):
        return "field 'id' (string or number) is missing", body
    body["history"] = body.get("history", body.get("liked", []))
    for name in ("history", "disliked", "candidates"):
        if name in body and not _is_item_list(body[name]):
            return f"field '{name}' must be a list of item ids or titles (strings or numbers)", body
    need = _NEEDS.get(task)
    if need and need not in body:
        return f"field '{need}' is missing (task {task})", body
    if need == "target" and not _is_item(body["target"]):
        return "field 'target' must be an item id or title (a string or number)", body
    if need == "candidates" and not body["candidates"]:
        return "field 'candidates' must be a non-empty list", body
    k = body.get("k")
    if "k" in body and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        return "field 'k' must be an integer >= 1 (more than the catalogue allows returns what there is)", body
    return None, body


def _is_item(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _is_item_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_item(v) for v in value)


def done_ids(path: Path) -> set[str]:
    """Ids already answered in ``path``; a last line cut short by a kill is removed first."""
    if not path.is_file():
        return set()
    raw = path.read_bytes()
    good_end = raw.rfind(b"\n") + 1
    if good_end != len(raw):  # an interrupted write left a partial line: drop it
        with path.open("r+b") as fh:
            fh.truncate(good_end)
    ids = set()
    for number, line in enumerate(raw[:good_end].decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, TypeError, KeyError):
            raise LlmrecError(f"{path}:{number}: not an answer line of llmrec predict (JSON with an 'id'); "
                              "fix or remove the file") from None  # fmt: skip
    return ids


def answer(recommender, task: str, batch: list[Request], k: int, unknown: str = "keep") -> list[dict[str, Any] | str]:
    """Answers for a batch, same order; a string is the problem with that request.

    The batch is answered together; if that fails, each request is answered alone, so one bad
    request fails alone and the others are still answered.
    """
    try:
        return _answer_batch(recommender, task, batch, k, unknown)
    except (LlmrecError, RuntimeError, ValueError):
        if len(batch) == 1:
            raise
    out: list[dict[str, Any] | str] = []
    for request in batch:
        try:
            out += _answer_batch(recommender, task, [request], k, unknown)
        except (LlmrecError, RuntimeError, ValueError) as exc:
            out.append(shorten(exc, 300) if isinstance(exc, LlmrecError) else f"failed: {type(exc).__name__}: {shorten(exc, 300)}")
    return out


def _answer_batch(recommender, task: str, batch: list[Request], k: int, unknown: str) -> list[dict[str, Any] | str]:
    if task == "next_item":
        problems = {}
        for r in batch:
            try:
                recommender.read_history(r.body["history"], unknown)
            except LlmrecError as exc:
                problems[r.id] = str(exc)
        good = [r for r in batch if r.id not in problems]
        results = {}
        for kk in sorted({r.body.get("k", k) for r in good}):
            group = [r for r in good if r.body.get("k", k) == kk]
            histories = [g.body["history"] for g in group]
            for r, recs in zip(group, recommender.recommend_many(histories, kk, unknown_items=unknown)):
                results[r.id] = {"id": r.body["id"], "items": [x.to_dict() for x in recs], **_unknown(recommender, r)}
                if note := recommender.short_note(kk, len(recs)):
                    results[r.id]["note"] = note
        return [problems.get(r.id) or results[r.id] for r in batch]
    out: list[dict[str, Any] | str] = []
    for r in batch:
        try:
            out.append(_answer_one(recommender, task, r, unknown))
        except LlmrecError as exc:
            out.append(str(exc))
    return out


def _unknown(recommender, r: Request) -> dict[str, int]:
    """``{"unknown_history": n}`` when the request's history or disliked items hold items outside the catalogue."""
    n = recommender.count_unknown(r.body["history"]) + recommender.count_unknown(r.body.get("disliked", []))
    return {"unknown_history": n} if n else {}


def _answer_one(recommender, task: str, r: Request, unknown: str) -> dict[str, Any]:
    # not at import: `llmrec predict --help` stays quick
    from llmrec.decoding.items import free_text

    if task == "rank":
        ranked = recommender.rank(r.body["history"], r.body["candidates"], unknown)
        return {"id": r.body["id"], "items": [x.to_dict() for x in ranked], **_unknown(recommender, r)}
    if task == "yes_no":
        p = recommender.predict_yes_no(r.body["history"], r.body["target"], r.body.get("disliked", []), unknown)
        pos = recommender.lookup(r.body["target"])
        item = ({"item_id": recommender.item_ids[pos], "title": recommender.titles[pos]} if pos is not None
                else {"item_id": None, "title": free_text(r.body["target"])})  # fmt: skip
        return {"id": r.body["id"], **item, "p_yes": round(p, 6), **_unknown(recommender, r)}
    [pos] = recommender.resolve([r.body["target"]])
    item = {"item_id": recommender.item_ids[pos], "title": recommender.titles[pos]}
    e = recommender.explain(r.body["history"], r.body["target"], unknown)
    return {"id": r.body["id"], **item, "explanation": e["text"], "grounded": e["grounded"],
            "cited": e["cited"], "invented": e["invented"], **_unknown(recommender, r)}  # fmt: skip


def run_predict(recommender, task: str, source: Path, target: Path, k: int = 10, batch_size: int = 8,
                progress: bool = True, unknown: str = "keep") -> dict[str, int]:  # fmt: skip
    """Answer every request of ``source`` not yet in ``target``; returns counts."""
    if task not in PREDICT_TASKS:
        raise LlmrecError(f"unknown task '{task}' (known: {', '.join(PREDICT_TASKS)})")
    with output_lock(target):
        return _answer_all(recommender, task, source, target, k, batch_size, progress, unknown)


@contextmanager
def output_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` while answering: a second writer would answer every id again."""
    import fcntl

    if target.is_dir():
        raise LlmrecError(f"{target}: is a folder; --output names a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fh = target.open("a", encoding="utf-8")
    except OSError as exc:
        raise LlmrecError(f"{target}: cannot write ({exc.strerror})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LlmrecError(f"{target}: another llmrec predict is writing it; wait for it or use another --output") from None
        yield  # the lock goes with the file handle


def _answer_all(recommender, task: str, source: Path, target: Path, k: int, batch_size: int,
                progress: bool, unknown: str) -> dict[str, int]:  # fmt: skip
    from tqdm.auto import tqdm

    done = done_ids(target)
    items = list(read_requests(source, task))
    counts = {"answered": 0, "skipped_done": 0, "bad": 0}
    todo = []
    for item in items:
        if isinstance(item, tuple):
            print(f"{source}:{item[0]}: {item[1]}; skipped", file=sys.stderr)
            counts["bad"] += 1
        elif item.id in done:
            counts["skipped_done"] += 1
        else:
            todo.append(item)
    with target.open("a", encoding="utf-8") as fh, tqdm(total=len(todo), desc=task, disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for request, result in zip(batch, answer(recommender, task, batch, k, unknown)):
                if isinstance(result, str):
                    print(f"{source}:{request.line}: {result}; skipped", file=sys.stderr)
                    counts["bad"] += 1
                else:
                    fh.write(json.dumps(result, ensure_ascii=False) + "\n")
                    counts["answered"] += 1
            fh.flush()
            bar.update(len(batch))
    return counts
