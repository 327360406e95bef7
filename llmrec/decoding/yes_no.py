"""yes/no requests of the Python API (``Recommender.predict_yes_no``): their prompts, rendered as
the training samples are, and the tuned fusion of the LLM's answers with the collaborative model."""

from __future__ import annotations

from collections.abc import Sequence

from llmrec.collab.guide import fuse_yes_no
from llmrec.decoding.items import free_text
from llmrec.errors import LlmrecError


def yes_no_prompts(rec, requests: Sequence[tuple[Sequence, str | int, Sequence]],
                   unknown_items: str = "keep") -> tuple[list[str], list[list[int]], list[int | None]]:  # fmt: skip
    """Per (history, item, disliked) request: its prompt, the liked history's catalogue positions
    and the item's (None for an item outside the catalogue, judged from its text)."""
    prompts, seen, targets = [], [], []
    for history, item, disliked in requests:
        liked, bad = rec.read_history(history, unknown_items), rec.read_history(disliked, unknown_items)
        target = rec.lookup(item)
        if target is None:
            if unknown_items != "keep" or not free_text(item):
                raise LlmrecError(rec.items.unknown_message(str(item)))
            title = free_text(item)
        else:
            title = rec.titles[target]
        events = [(i, True) for i in liked] + [(i, False) for i in bad]
        events = events[-rec.max_history :]
        template = rec.templates["yes_no"]

        # the target's train counts as the data holds them: a request names no user, so no
        # event of its own can be taken out (a held-out target has none in train anyway)
        stats = rec.item_stats.context(target) if rec.item_stats is not None else None

        def context(kept, title=title, stats=stats):
            return {**rec.words, "liked": [rec.items.title(i) for i, ok in kept if ok],
                    "disliked": [rec.items.title(i) for i, ok in kept if not ok], "target": title,
                    "target_stats": stats}  # fmt: skip

        fitted = rec.renderer.fit(template, events, context, "")
        if fitted is None:
            raise LlmrecError("the yes_no prompt does not fit the token budget even without history")
        prompts.append(fitted[0])
        seen.append([i for i in liked if isinstance(i, int)])
        targets.append(target)
    return prompts, seen, targets


def fused_answers(rec, p: list[float], seen: list[list[int]], targets: list[int | None]) -> list[float]:
    """The LLM's p(yes) per request, fused with the collaborative model when the adapter has a
    tuned yes/no fusion."""
    if rec.guide is None or not (weights := rec.fusion.get("yes_no")):
        return p
    # the tuned fusion: the collaborative model reads the liked history (a request does not
    # say how liked and disliked items interleave in time; tune reads every event in order);
    # a target outside the catalogue has no collaborative score: the LLM's p alone
    known = [r for r, t in enumerate(targets) if t is not None]
    if known:
        fused = fuse_yes_no(rec.guide, weights, [p[r] for r in known], [seen[r] for r in known],
                            [targets[r] for r in known], rec.item_ids)  # fmt: skip
        for r, value in zip(known, fused.tolist()):
            p[r] = value
    return p
