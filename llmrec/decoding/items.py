"""How a request names catalogue items: by id, by exact title, or by a title typed loosely.

``ItemRefs`` turns such references into catalogue positions, and keeps the titles a request names
that the catalogue does not hold as plain text for the LLM to read (``free_text``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from llmrec.data.clean import neutralize_markup
from llmrec.decoding.grounding import normalize_title
from llmrec.errors import LlmrecError, shorten

# What to do with a history reference that is not in the catalogue (see ItemRefs.read)
UNKNOWN_ITEMS = ("keep", "drop", "error")
# an unknown title kept as free text is cut to this many characters (a title, not a document)
MAX_FREE_TEXT = 200


def free_text(ref: str | int) -> str:
    """An unknown item reference as prompt text: one line, chat markup made plain, at most
    ``MAX_FREE_TEXT`` characters; "" when it holds no letter (an unknown id means nothing to a reader).
    Jinja inserts it as a value, so braces or instructions in it are data, never template or role."""
    text = " ".join(str(ref).split())[:MAX_FREE_TEXT]
    return neutralize_markup(text) if any(c.isalpha() for c in text) else ""


class ItemRefs:
    """The catalogue's ids and titles, and the lookups from a reference to a position."""

    def __init__(self, item_ids: Sequence[str], titles: Sequence[str]) -> None:
        self.item_ids = [str(i) for i in item_ids]
        self.titles = list(titles)
        self.position = {item: i for i, item in enumerate(self.item_ids)}
        self.by_title = {t: i for i, t in enumerate(self.titles)}
        self.by_norm = {normalize_title(t): i for i, t in enumerate(self.titles)}

    def add(self, item_ids: Sequence[str], titles: Sequence[str]) -> None:
        """Append new items (titles as cleaning stores them; the caller checks none repeats a catalogue title)."""
        for item, title in zip(item_ids, titles):
            # the lists grow before the lookups name the new position: a reader on another
            # thread (the service's feedback handler) never gets a position past their end
            n = len(self.titles)
            self.item_ids.append(str(item))
            self.titles.append(title)
            self.by_norm[normalize_title(title)] = n
            self.by_title[title] = n
            self.position[str(item)] = n

    def lookup(self, ref: str | int) -> int | None:
        """The catalogue position of an item id or title (exact title, then case/space-insensitive), or None.

        Chat markup in a title is matched as the catalogue stores it (neutralised, see
        ``neutralize_markup``), so a title typed as it appears in the raw data still resolves.
        """
        if not isinstance(ref, (str, int)) or isinstance(ref, bool):
            raise LlmrecError(f"{shorten(ref)!r}: an item is an id or a title (a string), not {type(ref).__name__}")
        text = str(ref)
        if text in self.position:
            return self.position[text]
        plain = neutralize_markup(text)
        if plain in self.by_title:
            return self.by_title[plain]
        return self.by_norm.get(normalize_title(plain))

    def read(self, refs: Sequence[str | int], unknown: str = "keep") -> list[int | str]:
        """``refs`` as catalogue positions, and, for ``unknown="keep"``, the free text of references
        that are not in the catalogue (an LLM reads a title it has never indexed; the collaborative
        model and the exclusion of seen items skip it).

        ``unknown``: ``keep`` (unknown titles stay as text; an unknown reference without a letter
        in it, an id, carries no meaning and is dropped), ``drop``, or ``error``.
        """
        if unknown not in UNKNOWN_ITEMS:
            raise LlmrecError(f"unknown_items '{shorten(unknown)}': expected one of {', '.join(UNKNOWN_ITEMS)}")
        out: list[int | str] = []
        for ref in refs:
            pos = self.lookup(ref)
            if pos is not None:
                out.append(pos)
            elif unknown == "error":
                raise LlmrecError(self.unknown_message(str(ref)))
            elif unknown == "keep" and (text := free_text(ref)):
                out.append(text)
        return out

    def unknown_message(self, text: str) -> str:
        """The one-line error for a reference to no catalogue item, with close titles when there are."""
        # close matches only for title-sized text: difflib on a 20 MB string would crawl
        close = difflib.get_close_matches(text, self.titles, n=3, cutoff=0.5) if len(text) <= 300 else []
        hint = f"; close matches: {'; '.join(close)}" if close else ""
        return f"'{shorten(text)}': no such item id or title in the catalogue{hint}"

    def title(self, entry: int | str) -> str:
        """The title of a position, or the free text itself."""
        return self.titles[entry] if isinstance(entry, int) else entry
