"""Decoding: the catalogue index (token trie), constrained search, backends, and the ``Recommender`` API."""
