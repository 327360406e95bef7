"""``llmrec recommend``: top-k catalogue items for a user or a history, optionally explained."""

from __future__ import annotations

import argparse
import math
import sys

from llmrec.cli.common import add_load_options, load_options, quiet_loading
from llmrec.errors import LlmrecError

MODE_NAMES = {"llm": "the LLM alone", "cf": "the collaborative model alone",
              "generate": "LLM x collaborative model, beam search", "rerank": "LLM x collaborative model, reranked"}
SCORE_NAMES = {"llm": "log-prob", "cf": "cf log-prob", "generate": "fused", "rerank": "fused"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``recommend`` subcommand."""
    p = sub.add_parser(
        "recommend",
        help="top-k catalogue items for a user or a history, optionally explained",
        description="Recommend the next items by beam search constrained to the catalogue (every item exists). "
        "The history's own items are never recommended.",
    )
    add_load_options(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id of the data: their whole history is used")
    who.add_argument("--history", nargs="+", metavar="ITEM", help="item ids or titles, oldest first")
    p.add_argument("-k", type=int, default=10, help="how many items (default: 10)")
    p.add_argument("--explain", action="store_true", help="add a generated, grounding-checked explanation")
    p.add_argument("--mode", choices=("auto", "llm", "cf", "generate", "rerank"), default="auto",
                   help="auto: the adapter's tuned fusion of LLM and collaborative model (the LLM alone without "
                        "one); llm; cf (the collaborative model alone); generate (beam search over the product of "
                        "both); rerank (the collaborative top candidates rescored) (default: auto)")  # fmt: skip
    p.add_argument("--guide-weight", type=float, metavar="LAMBDA",
                   help="weight of the collaborative model's log-probability (default: the tuned one)")
    p.add_argument("--unknown-items", choices=("keep", "drop", "error"), default="keep",
                   help="history items outside the catalogue: keep them in the prompt as text, drop them, or fail "
                        "(default: keep; recommended items are always catalogue items)")  # fmt: skip
    p.add_argument("--json", action="store_true", help='print {"items": [{"item_id", "title", "score", ...}]}')
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec recommend``."""
    import json
    import warnings

    from llmrec.decoding.recommender import Recommender

    if args.k < 1:
        raise LlmrecError(f"-k must be >= 1, got {args.k}")
    quiet_loading()
    load = load_options(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = Recommender.load(load.model, load.data, load.backend, load.device)
    for w in caught:
        if w.category is UserWarning and "catalogue differs" in str(w.message):
            print(f"llmrec: note: {w.message}", file=sys.stderr)
    history = rec.user_history(args.user) if args.user is not None else args.history
    if args.guide_weight is not None and not (math.isfinite(args.guide_weight) and args.guide_weight >= 0):
        raise LlmrecError(f"--guide-weight must be a finite number >= 0, got {args.guide_weight}")
    items = rec.recommend(history, args.k, explain=args.explain, mode=args.mode, guide_weight=args.guide_weight,
                          unknown_items=args.unknown_items)  # fmt: skip
    if unknown := rec.count_unknown(history):
        print(f"llmrec: note: {unknown} history item(s) not in the catalogue "
              f"({'read as text' if args.unknown_items == 'keep' else 'left out'})", file=sys.stderr)
    if note := rec.short_note(args.k, len(items)):
        print(f"llmrec: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"items": [i.to_dict() for i in items]}, ensure_ascii=False))
        return 0
    who = f"user {args.user}" if args.user is not None else "this history"
    shown = rec.read_history(history, args.unknown_items)[-rec.max_history :]
    mode = rec.default_mode() if args.mode == "auto" else args.mode
    print(f"Top {len(items)} for {who} ({len(history)} items; the newest {len(shown)} in the prompt, newest last; "
          f"{MODE_NAMES[mode]}):")
    for entry in shown[-5:]:
        print(f"  - {rec.titles[entry] if isinstance(entry, int) else entry + '  (not in the catalogue)'}")
    for n, item in enumerate(items, 1):
        print(f"{n:>3}. {item.title}  [{item.item_id}]  {SCORE_NAMES[mode]} {item.score:.2f}")
        if item.explanation is not None:
            mark = "grounded" if item.grounded else "NOT grounded: names an item outside the history"
            print(f"     why ({mark}): {item.explanation}")
    return 0
