"""Token counts of prompts, exactly as the tokenizer counts them, without tokenizing each prompt.

``prepare`` counts every prompt it writes (to fit histories into ``max_length``), and prompts
repeat the same titles and sentences. Where the tokenizer allows it (probed, not assumed), a
text's count is the sum of its lines' counts plus one per newline, and a line's count is the sum
of its words' counts (a word: a run of non-space characters with the single space before it).
Each distinct line and word is then tokenized once per counter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

# White space runs that byte-level BPE (GPT-2-style splitting) may merge across a newline: a
# newline beside a space or tab, or two newlines not followed by text. A text holding one is not
# counted line by line (a blank line between two lines of text is fine: "\n", "\n"). Two
# patterns, each starting at a fixed character class, search several times faster than one
# alternation.
_SPACE_NEWLINE = re.compile(r"[^\S\n]\n")
_JOINS = r"\n(?:[^\S\n]|\n(?:(?!\S){}))"
# Where a line is cut into words: before a single space between two non-space characters. A
# GPT-2 or Llama 3 pre-tokenizer always splits there (no pattern carries a space at its end), so
# tokens never cross the cut; ``TokenCounter`` probes that before relying on it.
_WORD_CUT = re.compile(r"(?<=\S)(?= \S)")


class TokenCounter:
    """Counts tokens of texts for one tokenizer, with ``tokenizer(texts)``'s numbers.

    Args:
        tokenizer: A Hugging Face tokenizer.
        specials: The texts it turns into special tokens (longest first).
        probes: Texts like the ones it will count (rendered prompts, answers), on which the line
            and word sums are checked against the tokenizer's own counts.
    """

    def __init__(self, tokenizer: Any, specials: Sequence[str], probes: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        # two newlines right before a special token end a segment, where they merge like at the end of a text
        ends = "".join(f"|{re.escape(t)}" for t in specials)
        self._joins = re.compile(_JOINS.format(ends))
        self._lines: dict[str, int] = {}  # token count of each line text seen (titles repeat)
        self._words: dict[str, int] = {}  # token count of each word of a line (names and codes repeat)
        self._overhead = len(self.tokenizer("")["input_ids"])  # tokens a call adds (e.g. a BOS)
        self.fast = self._fast_encoder(probes)
        self.by_lines = self._lines_add_up(probes)
        self.by_words = self.by_lines and self._words_add_up(probes)

    def count(self, text: str) -> int:
        """Tokens in ``text`` as the tokenizer encodes it by default (special tokens included)."""
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts. Where lines tokenize independently (``by_lines``) a text's
        count is the sum of its lines' counts plus one per newline, and each distinct line is
        counted once; most of a ``prepare`` is then lookups. Otherwise the texts are tokenized
        in one batched call."""
        if not texts:
            return []
        if self.by_lines:
            joins, space = self._joins.search, _SPACE_NEWLINE.search
            exact = [i for i, t in enumerate(texts) if joins(t) or space(t)]
        else:
            exact = list(range(len(texts)))
        counts = [0] * len(texts)
        if exact:
            for i, n in zip(exact, self._lengths([texts[i] for i in exact], True)):
                counts[i] = n
        if len(exact) == len(texts):
            return counts
        skip = set(exact)
        lines = self._lines
        known = lines.__getitem__
        missing = {}  # texts with a line not counted yet, by index
        for i, text in enumerate(texts):
            if i not in skip:
                parts = text.split("\n")
                try:
                    counts[i] = self._overhead + len(parts) - 1 + sum(map(known, parts))
                except KeyError:
                    missing[i] = parts
        new = list({line: None for parts in missing.values() for line in parts if line not in lines})
        if new:
            lines.update(zip(new, self._count_lines(new)))
        for i, parts in missing.items():
            counts[i] = self._overhead + len(parts) - 1 + sum(map(known, parts))
        return counts

    def _count_lines(self, lines: list[str]) -> list[int]:
        """Token counts of lines never seen, as the sums of their words' counts when ``by_words``
        (a new line is mostly new words in a new order: a rank prompt's "C. <title>")."""
        if not self.by_words:
            return self._lengths(lines, False)
        cut = _WORD_CUT.split
        split = [cut(line) for line in lines]
        words = self._words
        new = list({w: None for parts in split for w in parts if w not in words})
        if new:
            words.update(zip(new, self._lengths(new, False)))
        known = words.__getitem__
        return [sum(map(known, parts)) for parts in split]

    def _lengths(self, texts: list[str], special: bool) -> list[int]:
        """Token counts of ``texts`` (with the tokens a call adds when ``special``)."""
        if self.fast is not None:
            return [len(e.ids) for e in self.fast(texts, add_special_tokens=special)]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=special)["input_ids"]]

    def _fast_encoder(self, probes: Sequence[str]) -> Callable[..., Any] | None:
        """The Rust tokenizer's ``encode_batch_fast`` (no offsets: about twice as fast as calling
        the tokenizer) when the tokenizer has one and it counts the probes exactly as the
        tokenizer does; else None."""
        encode = getattr(getattr(self.tokenizer, "backend_tokenizer", None), "encode_batch_fast", None)
        if encode is None:
            return None
        probes = ["", "A user liked:\n- Heat (1995)\n\n", *probes, "  1. Toy Story\t(1995) — 東京 ☃ "]
        try:
            for special in (True, False):
                fast = [len(e.ids) for e in encode(probes, add_special_tokens=special)]
                if fast != [len(i) for i in self.tokenizer(probes, add_special_tokens=special)["input_ids"]]:
                    return None
        except Exception:  # noqa: BLE001 - any tokenizer that cannot do it falls back to the exact call
            return None
        return encode

    def _lines_add_up(self, probes: Sequence[str]) -> bool:
        """Whether this tokenizer's count of a text is its lines' counts plus one per newline
        (true of byte-level BPE that splits words at white space, e.g. SmolLM2, GPT-2, Llama 3)."""
        probes = [
            "a\n\nb\n  c\n\n\nd\n\n",  # newlines beside white space: counted whole
            "Liked:\n\n- x\n\nWill the user like it?\n",
            "1. Toy Story (1995)\n2. Jumanji\n— dash 東京 ☃\n\"quoted\"\n(end).",
            *probes,
        ]  # fmt: skip
        return self._same_counts(probes, words=False)

    def _words_add_up(self, probes: Sequence[str]) -> bool:
        """Whether a line's count is the sum of its words' (cut before each single space between
        two non-space characters): true where the pre-tokenizer always splits before such a space."""
        probes = [
            "C. Stark Foldable Drawer Organizer ST-02769", "- 2001: A Space Odyssey (1968)",
            "x 's it 're 1 234 5678 a , b ( c ) d - e . f", "Amélie  (2001)\tx  y \t z — 東京 ☃ ü",
            '- "Weird" Al\'s Movie, The [Director\'s cut]', "A. ¡Three Amigos! (1986) :) <3 #1 @x $5 100%",
            *probes,
        ]  # fmt: skip
        return self._same_counts(probes, words=True)

    def _same_counts(self, probes: list[str], words: bool) -> bool:
        """Whether ``count_many`` by lines (and by words, if ``words``) gives the tokenizer's
        counts on ``probes``; the counter's settings are left as they were and its caches empty."""
        exact = [len(ids) for ids in self.tokenizer(probes)["input_ids"]]
        before = getattr(self, "by_lines", False), getattr(self, "by_words", False)
        self.by_lines, self.by_words = True, words
        try:
            return self.count_many(probes) == exact
        finally:
            self.by_lines, self.by_words = before
            self._lines.clear()
            self._words.clear()
