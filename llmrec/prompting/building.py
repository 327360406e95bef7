"""Building every user's samples: in order, in chunks, optionally in forked worker processes.

A user's samples depend only on the user (``SampleBuilder.user_requests``), so chunks of users
can be built anywhere and joined in order; the output is the sequential one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llmrec.prompting.samples import SPLITS, Event, SampleBuilder


def user_events(catalog: pd.DataFrame, interactions: pd.DataFrame) -> Iterator[tuple[str, list[Event]]]:
    """Each user's events in sequence order (interactions must be sorted by user, then seq)."""
    row_of = pd.Series(np.arange(len(catalog)), index=catalog["item_id"])
    rows = row_of.reindex(interactions["item_id"]).to_numpy()
    liked = interactions["liked"].to_numpy()
    split = interactions["split"].to_numpy()
    users = interactions["user_id"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    for start, end in zip(bounds[:-1], bounds[1:]):
        yield users[start], [Event(int(rows[i]), bool(liked[i]), str(split[i])) for i in range(start, end)]


def build_samples(
    catalog: pd.DataFrame,
    interactions: pd.DataFrame,
    builder: SampleBuilder,
    progress: bool = True,
    workers: int = 1,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Records by task and split, for every user.

    With ``workers`` > 1 the users are cut into contiguous chunks built in forked processes; a
    user's samples depend only on the user (negatives are drawn from a generator seeded with the
    user's index), and chunks are joined in order, so the output is the sequential one.
    """
    import gc

    out: dict[str, dict[str, list[dict[str, Any]]]] = {t: {s: [] for s in SPLITS} for t in builder.options.tasks}
    users = list(user_events(catalog, interactions))
    bar = tqdm(total=len(users), desc="samples", unit="user", disable=not progress)
    try:
        for records, skipped in _chunks(builder, users, workers, bar):
            for record in records:
                out[record["task"]][record["split"]].append(record)
            for task, n in skipped.items():
                builder.skipped[task] += n
            # What the chunk left is collected once, and the records kept so far are moved out of
            # the collector's sight: every later collection would walk them again (with a chunk
            # built without collections, a third of the stage's time).
            gc.collect(0)
            gc.freeze()
    finally:
        gc.unfreeze()
        bar.close()
    return out


_CHUNK = 256  # users a worker builds at a time: big enough to amortise pickling, small for a live bar
_STATE: dict[str, Any] = {}  # what forked workers inherit


def _build_chunk(bounds: tuple[int, int]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    import gc

    builder, users = _STATE["builder"], _STATE["users"]
    before = dict(builder.skipped)
    requests = []
    enabled = gc.isenabled()
    gc.disable()  # a chunk allocates little garbage and many live objects: collecting as it goes is wasted
    try:
        for index in range(*bounds):  # a chunk's prompts are rendered and counted together: fewer tokenizer calls
            user, events = users[index]
            requests += builder.user_requests(user, events, index)
        records = builder.complete(requests)
    finally:
        if enabled:
            gc.enable()
    skipped = {t: builder.skipped[t] - before[t] for t in builder.skipped}
    builder.skipped.update(before)  # the caller adds the chunk's counts, in one process or many
    return records, skipped


def _chunks(builder: SampleBuilder, users: list, workers: int, bar) -> Iterator[tuple[list, dict[str, int]]]:
    bounds = [(s, min(s + _CHUNK, len(users))) for s in range(0, len(users), _CHUNK)]
    _STATE.update(builder=builder, users=users)
    try:
        # With workers, the first chunk is built here before they fork: they inherit its warm
        # caches (line and word counts, neutralised titles, rendered parts) instead of each
        # filling its own from nothing.
        first = bounds if workers <= 1 else bounds[:1]
        for b in first:
            result = _build_chunk(b)
            bar.update(b[1] - b[0])
            yield result
        if len(bounds) == len(first):
            return
        import multiprocessing
        import os

        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # forked workers: one thread each, no deadlock warning
        rest = bounds[1:]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for b, result in zip(rest, pool.imap(_build_chunk, rest)):
                bar.update(b[1] - b[0])
                yield result
    finally:
        _STATE.clear()
