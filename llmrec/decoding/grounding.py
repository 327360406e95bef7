"""Is a generated explanation grounded? Every title it names must be in the history or be the
recommended item, and it must cite at least one history item. Plain text processing, no model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_QUOTED = re.compile(r'"([^"\n]{2,200})"|“([^”\n]{2,200})”')
_SPACE = re.compile(r"\s+")


def normalize_title(text: str) -> str:
    """A title compared case- and space-insensitively."""
    return _SPACE.sub(" ", text).strip().casefold()


@dataclass
class Grounding:
    """What an explanation names, checked against what it may name."""

    grounded: bool
    cited: list[str] = field(default_factory=list)  # titles it names that it may name
    invented: list[str] = field(default_factory=list)  # quoted names, or catalogue titles, it may not name


class GroundingChecker:
    """Checks explanations against a catalogue.

    A title counts as named when it appears in quotes, or when a catalogue title of at least two
    words appears verbatim (case-insensitive) in the text. Quoted text that is not a permitted
    title makes the explanation ungrounded too: the model presented something as a title that the
    user never saw.
    """

    def __init__(self, titles: Iterable[str]) -> None:
        self.by_norm = {normalize_title(t): t for t in titles}
        self.long_titles = [t for t in self.by_norm if len(t.split()) >= 2]

    def check(self, text: str, history: Iterable[str], item: str) -> Grounding:
        """Whether ``text`` names only ``history`` titles and ``item``."""
        past = {normalize_title(t) for t in history}
        permitted = past | {normalize_title(item)}
        cited: list[str] = []
        invented: list[str] = []
        for match in _QUOTED.finditer(text):
            name = normalize_title(match.group(1) or match.group(2))
            target = cited if name in permitted else invented
            label = self.by_norm.get(name, (match.group(1) or match.group(2)).strip())
            if label not in target:
                target.append(label)
        lowered = normalize_title(text)
        for title in self.long_titles:
            if title in lowered and title not in permitted and self.by_norm[title] not in invented:
                invented.append(self.by_norm[title])
        # grounded: names no title it may not, and cites at least one item of the history
        from_history = any(normalize_title(c) in past for c in cited)
        return Grounding(grounded=from_history and not invented, cited=cited, invented=invented)
