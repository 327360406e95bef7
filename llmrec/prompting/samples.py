"""Supervised samples for each task, built from split interactions (prompt/completion pairs).

Which events become samples:

- train: each user's newest ``train_targets_per_user`` train events that have at least one
  earlier event; the history is every earlier event.
- valid: the valid event, with the train events as history.
- test: the test event, with the train and valid events as history.

A prompt never names a user: only item titles (and their attributes) go into it. Negatives are
drawn uniformly from the items the user never interacted with in any split, so a held-out item
can never appear as a negative in a training prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llmrec.errors import LlmrecError
from llmrec.options import option
from llmrec.prompting.evidence import cooccurrence_evidence, explanation_evidence
from llmrec.prompting.itemstats import ItemStats
from llmrec.prompting.templates import TASKS, PromptRenderer, Template

SPLITS = ("train", "valid", "test")


@dataclass
class SampleOptions:
    """Which samples ``prepare`` builds for each task."""

    tasks: tuple[str, ...] = option(TASKS, "tasks to build", choices=TASKS, many=True)
    # ten, not twenty: the same valid AUC in the sweep of eval/RESULTS.md, at two thirds of the tokens a sample
    max_history: int = option(10, "newest history items per prompt, before the token budget")
    max_length: int = option(512, "token budget of prompt + answer; older history is dropped to fit")
    # ten keep ml-latest-small to ~6k samples per task, enough for a 135M model on a CPU
    train_targets_per_user: int = option(10, "newest train events per user used as targets (0 = all)")
    # on top of the disliked targets the data has (hard negatives: items the user rated low)
    negatives_per_positive: int = option(1, "yes_no: unseen items labelled No per liked target (at most)")
    balance: bool = option(True, "yes_no: no more unseen negatives than balance a user's Yes and No labels",
                           flag="--no-balance")  # fmt: skip
    rank_candidates: int = option(10, "rank: candidates per prompt, the true next item plus unseen ones (2-20)")
    seed: int = option(0, "seed of negative sampling and candidate order")

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise LlmrecError(f"unknown task(s) {unknown or '(none given)'} (known: {', '.join(TASKS)})")
        if self.max_history < 1:
            raise LlmrecError("--max-history must be >= 1")
        if self.max_length < 32:
            raise LlmrecError("--max-length must be >= 32 tokens")
        if self.train_targets_per_user < 0 or self.negatives_per_positive < 0:
            raise LlmrecError("--train-targets-per-user and --negatives-per-positive must be >= 0")
        if not 2 <= self.rank_candidates <= 20:
            raise LlmrecError("--rank-candidates must be between 2 and 20")


@dataclass
class Event:
    """One interaction as samples see it."""

    item: int  # row of the item in the catalogue
    liked: bool
    split: str


@dataclass
class Request:
    """One sample waiting for its prompt to be fitted into the token budget."""

    task: str
    template: Template
    history: Sequence[Any]  # what the template context is built from, oldest first
    context: Callable[[Sequence[Any]], dict[str, Any]]
    answer: str
    record: Callable[[tuple[str, str, int]], dict[str, Any] | None]  # None rejects the fitted prompt
    retry: Callable[[tuple[str, str, int]], dict[str, Any] | None] | None = None


class SampleBuilder:
    """Turns each user's ordered events into prompt/completion records for every task.

    Explanations cite history items that share genres or tags with the target; when no item of
    the catalogue has any (``cooccurrence`` given), they cite the history items most often
    chosen by the same users as the target instead. ``stats`` (train-split counts) gives a
    yes/no target's popularity to templates that show it.
    """

    def __init__(
        self,
        catalog: pd.DataFrame,
        templates: dict[str, Template],
        renderer: PromptRenderer,
        words: dict[str, str],
        options: SampleOptions,
        cooccurrence=None,
        stats: ItemStats | None = None,
    ) -> None:
        self.titles = catalog["title"].tolist()
        self.item_ids = catalog["item_id"].tolist()
        self.attributes = [
            frozenset(g) | frozenset(t) for g, t in zip(catalog["genres"].tolist(), catalog["tags"].tolist())
        ]
        self.cooccurrence = None if any(self.attributes) else cooccurrence
        self.explain_source = "attributes" if any(self.attributes) else (
            "co-occurrence" if cooccurrence is not None else "none")  # fmt: skip
        self.templates = templates
        self.renderer = renderer
        self.words = words
        self.options = options
        self.skipped = {task: 0 for task in options.tasks}
        self.stats = stats

    def _targets(self, events: list[Event]) -> Iterator[tuple[str, int]]:
        """(split, position) of each event that becomes a target."""
        train = [i for i, e in enumerate(events) if e.split == "train" and i > 0]
        n = self.options.train_targets_per_user
        for i in train[-n:] if n else train:
            yield "train", i
        for i, e in enumerate(events):
            if e.split != "train":
                yield e.split, i

    def _unseen_budget(self, rng: np.random.Generator, events: list[Event], targets: list[tuple[str, int]]):
        """Unseen negatives per liked target position. With ``balance``, a split's disliked targets
        (hard negatives) count first and unseen items only make up the rest of the No labels, so
        Yes and No are as even as the user's events allow; the liked targets that get one are
        drawn at random."""
        per = self.options.negatives_per_positive
        budget: dict[int, int] = {}
        for split in SPLITS:
            liked = [pos for s, pos in targets if s == split and events[pos].liked]
            if not self.options.balance:
                budget.update((pos, per) for pos in liked)
                continue
            disliked = sum(1 for s, pos in targets if s == split and not events[pos].liked)
            wanted = min(per * len(liked), max(0, len(liked) - disliked))
            for k, pos in enumerate(rng.permutation(liked).tolist() if liked else []):
                budget[pos] = min(per, max(0, wanted - k * per))
        return budget

    def _unseen(self, rng: np.random.Generator, seen: set[int], k: int) -> list[int]:
        """``k`` distinct items the user never interacted with, uniformly."""
        n_items = len(self.titles)
        if n_items - len(seen) < k:
            return []
        if n_items - len(seen) < 4 * k:  # nearly everything seen: rejection sampling would crawl
            free = [j for j in range(n_items) if j not in seen]
            return [int(j) for j in rng.choice(free, size=k, replace=False)]
        # Rejection sampling, drawing as many as are still missing at a time: numpy's bounded
        # draws are the same numbers one by one or in an array, and a round never draws past the
        # k-th item kept, so the stream (and every prepared data set) is the one-by-one draws'.
        picked: dict[int, None] = {}
        while len(picked) < k:
            for j in rng.integers(n_items, size=k - len(picked)).tolist():
                if j not in seen and j not in picked:
                    picked[j] = None
        return list(picked)

    def _record(self, task: str, split: str, user: str, history: list[int], fitted, target: int, **extra: Any):
        prompt, completion, kept = fitted
        shown = history[len(history) - kept :]
        return {
            "prompt": prompt,
            "completion": completion,
            "task": task,
            "split": split,
            "user_id": user,
            "item_id": self.item_ids[target],
            "history": [self.item_ids[h] for h in shown],
            "label": extra.get("label", -1),
            "candidates": extra.get("candidates", []),
        }

    def user_records(self, user: str, events: list[Event], user_index: int) -> list[dict[str, Any]]:
        """Every record of one user, for the configured tasks."""
        return self.complete(self.user_requests(user, events, user_index))

    def user_requests(self, user: str, events: list[Event], user_index: int) -> list[Request]:
        """Every sample of one user, before its prompt is fitted (``complete`` fits them)."""
        opts = self.options
        rng = np.random.default_rng([opts.seed, user_index])
        seen = {e.item for e in events}
        t = self.templates
        requests: list[Request] = []
        targets = list(self._targets(events))
        unseen = self._unseen_budget(rng, events, targets)
        for split, pos in targets:
            past = events[max(0, pos - opts.max_history) : pos]
            history = [e.item for e in past]
            target = events[pos]
            if "next_item" in opts.tasks:
                requests.append(self._next_item(t["next_item"], split, user, history, target.item))
            if "yes_no" in opts.tasks:
                negatives = self._unseen(rng, seen, unseen.get(pos, 0)) if target.liked else []
                # a train target's own event is taken out of its counts; a negative has none
                own = target.liked if split == "train" else None
                for item, liked, mine in [(target.item, target.liked, own)] + [(n, False, None) for n in negatives]:
                    requests.append(self._yes_no(t["yes_no"], split, user, past, item, liked, mine))
            if "explain" in opts.tasks and target.liked:
                explain = self._explain(t["explain"], split, user, history, target.item, history)
                if explain is None:
                    self.skipped["explain"] += 1
                else:
                    requests.append(explain)
            if "rank" in opts.tasks:
                others = self._unseen(rng, seen, opts.rank_candidates - 1)
                if not others:  # the user has seen nearly the whole catalogue
                    self.skipped["rank"] += 1
                    continue
                candidates = others + [target.item]
                rng.shuffle(candidates)
                requests.append(self._rank(t["rank"], split, user, history, target.item, candidates))
        return requests

    def complete(self, requests: list[Request]) -> list[dict[str, Any]]:
        """Fit every request into the budget (batched) and build the records that survive, in order."""
        fitted = self.renderer.fit_many([(r.template, r.history, r.context, r.answer) for r in requests])
        records = []
        for request, fit in zip(requests, fitted):
            record = request.record(fit) if fit is not None else None
            if record is None and request.retry is not None and fit is not None:
                record = request.retry(fit)
            if record is None:
                self.skipped[request.task] += 1
            else:
                records.append(record)
        return records

    def _titles(self, items: Sequence[int]) -> list[str]:
        return [self.titles[i] for i in items]

    def _next_item(self, template, split, user, history, target) -> Request:
        title = self.titles[target]
        return Request(
            "next_item", template, history,
            lambda h: {**self.words, "history": self._titles(h), "target": title},
            template.render_answer({**self.words, "target": title}),
            lambda fit: self._record("next_item", split, user, history, fit, target),
        )  # fmt: skip

    def _yes_no(self, template, split, user, past: list[Event], target: int, liked: bool, own: bool | None) -> Request:
        title = self.titles[target]
        stats = self.stats.context(target, own) if self.stats is not None else None

        def context(kept: Sequence[Event]) -> dict[str, Any]:
            return {
                **self.words,
                "liked": [self.titles[e.item] for e in kept if e.liked],
                "disliked": [self.titles[e.item] for e in kept if not e.liked],
                "target": title,
                "target_stats": stats,
                "liked_target": liked,
            }

        history = [e.item for e in past]
        return Request(
            "yes_no", template, past, context, template.render_answer(context([])),
            lambda fit: self._record("yes_no", split, user, history, fit, target, label=int(liked)),
        )  # fmt: skip

    def _explain(self, template, split, user, history, target, evidence_from, attempts: int = 3) -> Request | None:
        """An explanation request whose citations come from ``evidence_from``.

        The budget may drop a cited item from the prompt; then the evidence is recomputed from
        what is shown (a shorter history), at most ``attempts`` times.
        """
        title = self.titles[target]
        if self.cooccurrence is not None:
            cited, shared = cooccurrence_evidence(evidence_from, target, self.cooccurrence, self.titles, split == "train")
        else:
            cited, shared = explanation_evidence(evidence_from, target, self.attributes, self.titles)
        if not cited:  # nothing shared: no explanation rather than an invented one
            return None
        context = {**self.words, "target": title, "cited": cited, "shared": shared}

        def record(fit):
            shown = self._titles(history[len(history) - fit[2] :])
            return self._record("explain", split, user, history, fit, target) if set(cited) <= set(shown) else None

        def retry(fit):
            if attempts <= 1:
                return None
            again = self._explain(template, split, user, history, target, history[len(history) - fit[2] :], attempts - 1)
            if again is None:
                return None
            refit = self.renderer.fit(again.template, again.history, again.context, again.answer)
            return again.record(refit) if refit is not None else None

        return Request(
            "explain", template, history, lambda h: {**context, "history": self._titles(h)},
            template.render_answer(context), record, retry,
        )  # fmt: skip

    def _rank(self, template, split, user, history, target, candidates) -> Request:
        labels = list(template.labels)
        pairs = [(labels[i], self.titles[c]) for i, c in enumerate(candidates)]
        label = candidates.index(target)
        return Request(
            "rank", template, history,
            lambda h: {**self.words, "history": self._titles(h), "candidates": pairs},
            template.render_answer({**self.words, "label": labels[label]}),
            lambda fit: self._record(
                "rank", split, user, history, fit, target, label=label, candidates=[self.item_ids[c] for c in candidates]
            ),
        )  # fmt: skip
