"""Paired grounding counts of two `eval/explain_grounding.py` outputs on the same requests.

    python eval/explain_pair.py A.json[:MODEL] B.json[:MODEL]

Each side is an output of `explain_grounding.py` (same data, users and items, so the requests
match one for one) and, when it holds several models, the one named after the colon. Prints each
side's grounded count, the users grounded under one side only, the exact McNemar p-value of
those two counts (two-sided binomial test), and how many answers invent a title, as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def answers(spec: str) -> list[dict]:
    path, _, model = spec.partition(":") if not Path(spec).is_file() else (spec, "", "")
    models = json.loads(Path(path).read_text())["models"]
    if not model and len(models) != 1:
        raise SystemExit(f"{path}: holds {', '.join(models)}; name one after a colon")
    if model and model not in models:
        raise SystemExit(f"{path}: no model {model!r} (it holds {', '.join(models)})")
    return models[model or next(iter(models))]["answers"]


def main() -> None:
    from scipy.stats import binomtest

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    a, b = answers(args.a), answers(args.b)
    if [(r["user"], r["item"]) for r in a] != [(r["user"], r["item"]) for r in b]:
        raise SystemExit("the two outputs explain different requests")
    only_a = sum(x["grounded"] and not y["grounded"] for x, y in zip(a, b))
    only_b = sum(y["grounded"] and not x["grounded"] for x, y in zip(a, b))
    p = binomtest(only_b, only_a + only_b).pvalue if only_a + only_b else 1.0
    print(json.dumps({"requests": len(a), "a_grounded": sum(r["grounded"] for r in a),
                      "b_grounded": sum(r["grounded"] for r in b), "only_a": only_a, "only_b": only_b,
                      "mcnemar_exact_p": p, "a_inventing": sum(r["invented"] > 0 for r in a),
                      "b_inventing": sum(r["invented"] > 0 for r in b)}))  # fmt: skip


if __name__ == "__main__":
    main()
