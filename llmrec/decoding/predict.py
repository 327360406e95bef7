"""``llmrec predict``: a JSONL file of requests in, a JSONL file of answers out, resumable.

Request fields (one JSON object a line):

- ``id`` (string or number, unique): echoed in the answer; ids already in the output are skipped.
- ``history``: item ids or titles, oldest first (``liked`` is accepted as a synonym).
- ``disliked`` (yes_no, optional): items the user disliked.
- ``target``: the item to judge (yes_no) or to explain (explain).
- ``candidates``: the items to order (rank).
- ``k`` (next_item, optional): how many items (default: ``--k``).

A bad line is reported on stderr with its line number and skipped; the job goes on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError

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
    with path.open(encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                body = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, f"not valid JSON ({exc.msg})"
                continue
            if not isinstance(body, dict):
                yield number, "a request is a JSON object"
                continue
            if "id" not in body or not isinstance(body["id"], (str, int)) or isinstance(body["id"], bool):
                yield number, "field 'id' (string or number) is missing"
                continue
            history = body.get("history", body.get("liked", []))
            if not isinstance(history, list):
                yield number, "field 'history' must be a list of item ids or titles"
                continue
            need = _NEEDS.get(task)
            if need and need not in body:
                yield number, f"field '{need}' is missing (task {task})"
                continue
            if need == "candidates" and (not isinstance(body["candidates"], list) or not body["candidates"]):
                yield number, "field 'candidates' must be a non-empty list"
                continue
            if "k" in body and (not isinstance(body["k"], int) or body["k"] < 1):
                yield number, "field 'k' must be an integer >= 1"
                continue
            key = str(body["id"])
            if key in seen:
                yield number, f"id '{key}' appears twice"
                continue
            seen.add(key)
            body["history"] = history
            yield Request(number, key, body)


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
    for line in raw[:good_end].decode("utf-8").splitlines():
        if line.strip():
            ids.add(str(json.loads(line)["id"]))
    return ids


def answer(recommender, task: str, batch: list[Request], k: int) -> list[dict[str, Any] | str]:
    """Answers for a batch, same order; a string is the problem with that request."""
    if task == "next_item":
        problems = {}
        for r in batch:
            try:
                recommender.resolve(r.body["history"])
            except LlmrecError as exc:
                problems[r.id] = str(exc)
        good = [r for r in batch if r.id not in problems]
        results = {}
        for kk in sorted({r.body.get("k", k) for r in good}):
            group = [r for r in good if r.body.get("k", k) == kk]
            for r, recs in zip(group, recommender.recommend_many([g.body["history"] for g in group], kk)):
                results[r.id] = {"id": r.body["id"], "items": [x.to_dict() for x in recs]}
        return [problems.get(r.id) or results[r.id] for r in batch]
    out: list[dict[str, Any] | str] = []
    for r in batch:
        try:
            if task == "yes_no":
                p = recommender.predict_yes_no(r.body["history"], r.body["target"], r.body.get("disliked", []))
                [pos] = recommender.resolve([r.body["target"]])
                item = {"item_id": recommender.item_ids[pos], "title": recommender.titles[pos]}
                out.append({"id": r.body["id"], **item, "p_yes": round(p, 6)})
            elif task == "explain":
                e = recommender.explain(r.body["history"], r.body["target"])
                [pos] = recommender.resolve([r.body["target"]])
                item = {"item_id": recommender.item_ids[pos], "title": recommender.titles[pos]}
                out.append({"id": r.body["id"], **item, "explanation": e["text"], "grounded": e["grounded"],
                            "cited": e["cited"], "invented": e["invented"]})  # fmt: skip
            else:
                ranked = recommender.rank(r.body["history"], r.body["candidates"])
                out.append({"id": r.body["id"], "items": [x.to_dict() for x in ranked]})
        except LlmrecError as exc:
            out.append(str(exc))
    return out


def run_predict(recommender, task: str, source: Path, target: Path, k: int = 10, batch_size: int = 8,
                progress: bool = True) -> dict[str, int]:  # fmt: skip
    """Answer every request of ``source`` not yet in ``target``; returns counts."""
    from tqdm.auto import tqdm

    if task not in PREDICT_TASKS:
        raise LlmrecError(f"unknown task '{task}' (known: {', '.join(PREDICT_TASKS)})")
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
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as fh, tqdm(total=len(todo), desc=task, disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for request, result in zip(batch, answer(recommender, task, batch, k)):
                if isinstance(result, str):
                    print(f"{source}:{request.line}: {result}; skipped", file=sys.stderr)
                    counts["bad"] += 1
                else:
                    fh.write(json.dumps(result, ensure_ascii=False) + "\n")
                    counts["answered"] += 1
            fh.flush()
            bar.update(len(batch))
    return counts
