"""Classical baselines on the same split and users as llmrec: popularity, item-kNN and SASRec.

Each has ``fit(sequences, n_items)`` (per user, train item positions in time order) and
``score(histories) -> (users, n_items)`` scores, higher is better; the evaluator excludes the
history and ranks the held-out item pessimistically (ties against the system).
"""

from __future__ import annotations

from llmrec.baselines.itemknn import ItemKNN
from llmrec.baselines.popularity import Popularity

BASELINES = ("popularity", "itemknn", "sasrec")


def make(name: str, **options):
    """A baseline by name, with its options."""
    if name == "popularity":
        return Popularity(**options)
    if name == "itemknn":
        return ItemKNN(**options)
    if name == "sasrec":
        from llmrec.baselines.sasrec import SASRec

        return SASRec(**options)
    raise ValueError(f"unknown baseline '{name}'")


__all__ = ["BASELINES", "ItemKNN", "Popularity", "make"]
