"""The catalogue token trie against brute force, on random and on real catalogues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.decoding.index import CatalogIndex, answer_tokens, build_trie
from llmrec.decoding.trie import TrieTensors
from llmrec.errors import LlmrecError

END = 0


def brute_allowed(sequences: list[list[int]], prefix: list[int], permitted: set[int]) -> set[int]:
    """Next tokens after ``prefix`` among the permitted sequences, by scanning them all."""
    k = len(prefix)
    return {s[k] for i, s in enumerate(sequences) if i in permitted and len(s) > k and s[:k] == prefix}


def walk(index: CatalogIndex, prefix: list[int]) -> int:
    """The node ``prefix`` leads to, by the one trie walk the backends use (``TrieTensors.walk``)."""
    if not prefix:
        return 0
    return int(TrieTensors(index).walk(torch.as_tensor([prefix]))[0])


# answers over a 6-token vocabulary, each ended by the end token 0 (which never occurs inside)
answers = st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=5), min_size=1, max_size=25, unique_by=tuple)


@settings(max_examples=150, deadline=None)
@given(answers, st.data())
def test_allowed_tokens_equal_brute_force(bodies, data):
    sequences = [b + [END] for b in bodies]
    index = CatalogIndex([str(i) for i in range(len(sequences))], [str(b) for b in bodies], sequences, 6, END)
    excluded = data.draw(st.sets(st.integers(0, len(sequences) - 1)))
    permitted = set(range(len(sequences))) - excluded
    mask = index.node_mask(sorted(excluded))
    prefixes = {tuple(s[:k]) for s in sequences for k in range(len(s))}
    for prefix in prefixes:
        node = walk(index, list(prefix))
        assert node >= 0
        expected = brute_allowed(sequences, list(prefix), permitted)
        assert set(index.allowed_tokens(node, mask).tolist()) == expected
        assert set(index.allowed_tokens(node).tolist()) == brute_allowed(sequences, list(prefix), set(range(len(sequences))))
    for i, s in enumerate(sequences):  # every answer ends at its own item
        assert index.item_at(walk(index, s)) == i
    assert walk(index, [5] * 7) == -1  # longer than any answer (5 tokens + end): off the trie


def test_identical_token_sequences_are_refused_with_both_titles():
    with pytest.raises(LlmrecError, match="'A' and 'B' have the same tokens"):
        CatalogIndex(["1", "2"], ["A", "B"], [[3, 4, END], [3, 4, END]], 6, END)


def test_an_answer_must_end_with_one_end_token():
    with pytest.raises(LlmrecError, match="must end with the end-of-answer token"):
        CatalogIndex(["1"], ["A"], [[3, END, 4, END]], 6, END)


def test_candidates_restrict_and_added_items_become_reachable():
    index = CatalogIndex(["a", "b", "c"], ["A", "B", "C"], [[1, 2, END], [1, 3, END], [4, END]], 6, END)
    only_b = index.node_mask(allowed=[1])
    assert index.allowed_tokens(0, only_b).tolist() == [1]
    assert index.allowed_tokens(walk(index, [1]), only_b).tolist() == [3]
    bigger = index.with_items(["d"], ["D"], [[1, 5, END]])
    assert walk(index, [1, 5]) == -1
    assert bigger.item_at(walk(bigger, [1, 5, END])) == 3
    with pytest.raises(LlmrecError, match="already in the catalogue"):
        index.with_items(["a"], ["A2"], [[5, END]])


def test_trie_arrays_are_flat_and_children_contiguous():
    trie = build_trie([[5, 1, 9], [5, 2, 9], [5, 1, 3, 9], [7, 9]], 10)
    assert trie.n_nodes == 10 and trie.edge_key.tolist() == sorted(trie.edge_key.tolist())
    for node in range(trie.n_nodes):
        kids = range(trie.child_ptr[node], trie.child_ptr[node + 1])
        assert all(trie.parent[k] == node for k in kids)
        assert list(trie.token[list(kids)]) == sorted(trie.token[list(kids)])


def test_real_catalogue_tokenized_in_the_answer_position(tokenizer, embedded_ml):
    """ml-latest-small's 9k titles: every title's tokens lead to itself, as the model would write it."""
    from llmrec.prompting.templates import PromptRenderer

    movies = pd.read_csv(embedded_ml / "movies.csv").drop_duplicates("title")
    titles = movies["title"].tolist()
    prefix = PromptRenderer(tokenizer, 512).chat("system", "user")
    index = CatalogIndex.from_tokenizer(tokenizer, movies["movieId"].astype(str).tolist(), titles, prefix)
    assert len(index) == len(titles)
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(titles), 200, replace=False):
        full = tokenizer(prefix + titles[i] + tokenizer.eos_token)["input_ids"]
        head = tokenizer(prefix)["input_ids"]
        assert index.sequences[i] == full[len(head):] and index.sequences[i][-1] == eos
        assert index.item_at(walk(index, index.sequences[i])) == i
        assert tokenizer.decode(index.sequences[i][:-1]) == titles[i]
    assert answer_tokens(tokenizer, ["Toy Story (1995)"], prefix, tokenizer.eos_token)[0][-1] == eos
