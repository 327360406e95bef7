"""Prompt templates: loading the shipped YAML files, rendering them through a chat template, and
fitting a history into a token budget.

A template file holds ``name``, ``version``, ``task``, ``system`` and ``user`` (Jinja2, the
question) and ``answer`` (Jinja2, the training target), plus optional ``labels``. The name,
version and a hash of the file are saved beside everything rendered with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import jinja2
import jinja2.meta
import yaml

from llmrec.data.clean import neutralize_markup
from llmrec.errors import LlmrecError
from llmrec.prompting.counting import TokenCounter

TASKS = ("next_item", "yes_no", "explain", "rank")
_MISSING = object()
_RENDER_CACHE = 200_000  # rendered texts a template keeps
_REQUIRED = ("name", "version", "task", "system", "user", "answer")
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)

# How prompts speak of an item, by the data's item noun: (plural, what a user did with it).
DOMAINS = {
    "movie": ("movies", "watched"),
    "artist": ("artists", "listened to"),
    "book": ("books", "read"),
    "item": ("items", "interacted with"),
}


def domain_words(noun: str) -> dict[str, str]:
    """The words templates use for items: ``noun``, ``plural`` and ``verb``."""
    plural, verb = DOMAINS.get(noun, (noun + "s", "interacted with"))
    return {"noun": noun, "plural": plural, "verb": verb}


class Tokenizer(Protocol):
    """What rendering needs of a Hugging Face tokenizer."""

    chat_template: str | None
    eos_token: str | None

    def __call__(self, text: str, **kwargs: Any) -> Any: ...

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Template:
    """One task's prompt template, as loaded from ``prompts/NAME.yaml``."""

    name: str
    version: int
    task: str
    system: str
    user: str
    answer: str
    sha256: str
    labels: Any = None
    source: str = ""
    _compiled: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)  # and rendered parts

    def _render(self, part: str, context: dict[str, Any]) -> str:
        if part not in self._compiled:
            source = getattr(self, part)
            compiled = _ENV.from_string(source)
            # the globals as one dict rather than jinja's ChainMap: every render copies them, and
            # a ChainMap made that copy half of a render's time
            compiled.globals = dict(compiled.globals)
            self._compiled[part] = compiled
            names = jinja2.meta.find_undeclared_variables(_ENV.parse(source)) - {"labels"}
            self._compiled[f"{part}:names"] = tuple(sorted(names))
        # A part that reads only scalars (the system line, most answers) is rendered once per
        # distinct value: a prepare renders it for every sample.
        key: tuple | None = (part,)
        for name in self._compiled[f"{part}:names"]:
            value = context.get(name, _MISSING)
            if value is not _MISSING and not isinstance(value, (str, int, float, bool)):
                key = None
                break
            key += (value,)
        if key is not None and (done := self._compiled.get(key)) is not None:
            return done
        try:
            text = self._compiled[part].render(labels=self.labels, **context).strip()
        except jinja2.UndefinedError as exc:
            raise LlmrecError(f"{self.source}: template field '{part}': {exc.message}") from None
        if key is not None and len(self._compiled) < _RENDER_CACHE:
            self._compiled[key] = text
        return text

    def render_system(self, context: dict[str, Any]) -> str:
        """The system message."""
        return self._render("system", context)

    def render_user(self, context: dict[str, Any]) -> str:
        """The question (user message) for a context such as ``{"history": [...], ...}``."""
        return self._render("user", context)

    def render_answer(self, context: dict[str, Any]) -> str:
        """The answer the model is trained to give."""
        return self._render("answer", context)

    def identity(self) -> dict[str, Any]:
        """Name, version and hash: what is saved beside data, adapters and reports."""
        return {"name": self.name, "version": self.version, "task": self.task, "sha256": self.sha256}


def load_template(path: str | Path) -> Template:
    """Load and check one template file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        spec = yaml.safe_load(text)
    except OSError as exc:
        raise LlmrecError(f"{path}: cannot read template ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise LlmrecError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(spec, dict):
        raise LlmrecError(f"{path}: a template is a YAML mapping")
    missing = [k for k in _REQUIRED if k not in spec]
    unknown = sorted(set(spec) - set(_REQUIRED) - {"labels"})
    if missing or unknown:
        raise LlmrecError(f"{path}: missing field(s) {missing}, unknown field(s) {unknown}")
    if spec["task"] not in TASKS:
        raise LlmrecError(f"{path}: unknown task {spec['task']!r} (known: {', '.join(TASKS)})")
    for part in ("system", "user", "answer"):
        try:
            _ENV.parse(spec[part])
        except jinja2.TemplateSyntaxError as exc:
            raise LlmrecError(f"{path}: field '{part}' line {exc.lineno}: {exc.message}") from None
    return Template(
        name=str(spec["name"]),
        version=int(spec["version"]),
        task=spec["task"],
        system=spec["system"],
        user=spec["user"],
        answer=spec["answer"],
        labels=spec.get("labels"),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        source=str(path),
    )


def shipped_template_paths() -> dict[str, Path]:
    """Task name to the template file shipped in ``llmrec.templates`` (the prompts/ folder)."""
    folder = resources.files("llmrec.templates")
    return {task: Path(str(folder / f"{task}.yaml")) for task in TASKS}


def shipped_templates() -> dict[str, Template]:
    """Every shipped template (the current version), by task."""
    return {task: load_template(path) for task, path in shipped_template_paths().items()}


def shipped_version(task: str, version: int) -> Template | None:
    """The shipped template of ``task`` at ``version``: the current file or an earlier one kept
    beside it (``prompts/TASK.vN.yaml``); None if the package has no such version."""
    current = load_template(shipped_template_paths()[task])
    if current.version == version:
        return current
    path = shipped_template_paths()[task].with_name(f"{task}.v{version}.yaml")
    return load_template(path) if path.is_file() else None


def templates_for(identities: dict[str, dict[str, Any]] | None) -> dict[str, Template]:
    """The templates an adapter was trained with (its manifest's ``templates``), so prompts at
    inference read as they did in training; tasks it did not train, and versions this package
    does not ship (with a warning), get the current ones."""
    import warnings

    from llmrec.errors import LlmrecWarning

    templates = shipped_templates()
    for task, identity in (identities or {}).items():
        if task not in templates:
            continue
        found = shipped_version(task, int(identity.get("version", 0)))
        if found is None or identity.get("sha256") not in (None, found.sha256):
            warnings.warn(f"the adapter was trained with {task} template v{identity.get('version')}, which this "
                          f"llmrec does not ship unchanged; prompting with v{templates[task].version}",
                          LlmrecWarning, stacklevel=2)  # fmt: skip
            continue
        templates[task] = found
    return templates


class _Neutralised(dict):
    """Neutralised text of each string looked up, computed on first use."""

    def __init__(self, specials: tuple[str, ...]) -> None:
        super().__init__()
        self.specials = specials

    def __missing__(self, text: str) -> str:
        done = self[text] = neutralize_markup(text, self.specials)
        return done


class PromptRenderer:
    """Renders templates for one tokenizer and fits histories into ``max_length`` tokens.

    The prompt goes through the tokenizer's chat template when it has one (system + user
    message, then the assistant header); the completion is the answer followed by the token that
    ends an answer (the tokenizer's end-of-sequence token, ``<|im_end|>`` for ChatML).
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.end_of_answer = tokenizer.eos_token or "\n"
        # every token text the tokenizer would turn into a special token if data contained it
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        specials = {*getattr(tokenizer, "all_special_tokens", []), *(str(a) for a in added.values())}
        self.specials = tuple(sorted((s for s in specials if s), key=len, reverse=True))
        self._frame = None
        self._frame = self._chat_frame()
        self._plain = _Neutralised(self.specials)  # neutralised text of each string seen
        eoa = self.end_of_answer
        probes = [self.chat("Answer.", 'Will the user like "x"?'), f"Yes{eoa}", f"x\n\n{eoa}", f"The Matrix (1999){eoa}",
                  self.chat("You are a recommender system. You answer Yes or No.",
                            'A user watched these movies, oldest first.\nLiked:\n- Heat (1995)\n- Amélie (2001)\n'
                            '- 2001: A Space Odyssey (1968)\nDisliked:\n- "Weird" Al\'s Movie, The [Director\'s cut]\n'
                            'Will the user like "Se7en (1995)"? Answer Yes or No.')]  # fmt: skip
        self.counter = TokenCounter(tokenizer, self.specials, probes)

    def plain(self, context: dict[str, Any]) -> dict[str, Any]:
        """The context with every text value neutralised (data never becomes special tokens)."""

        done = self._plain

        def one(value: Any) -> Any:
            kind = type(value)
            if kind is str:
                return done[value]
            if kind is list or kind is tuple:  # lists of titles (or of label/title pairs): one pass
                out = [done[v] if type(v) is str else one(v) for v in value]
                return out if kind is list else tuple(out)
            if isinstance(value, str):
                return done[str(value)]
            if isinstance(value, (list, tuple)):
                return type(value)(one(v) for v in value)
            return value

        return {key: one(value) for key, value in context.items()}

    def chat(self, system: str, user: str) -> str:
        """The text of the prompt up to where the answer starts."""
        if self._frame is not None:
            head, middle, tail = self._frame
            return head + system + middle + user + tail
        if getattr(self.tokenizer, "chat_template", None):
            return self._apply_chat_template(system, user)
        return f"{system}\n\n{user}\n"

    def _apply_chat_template(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _chat_frame(self) -> tuple[str, str, str] | None:
        """The chat template's text around the two messages, when it only wraps them: rendering
        it for every prompt is a third of ``prepare``'s time. Checked against the template on
        two probes (None, and the template is used each time, where the frame would differ)."""
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        marks = ("\x00llmrec-system\x00", "\x00llmrec-user\x00")
        rendered = self._apply_chat_template(*marks)
        if rendered.count(marks[0]) != 1 or rendered.count(marks[1]) != 1:
            return None
        head, rest = rendered.split(marks[0])
        middle, tail = rest.split(marks[1])
        frame = (head, middle, tail)
        probes = [("You recommend.", "A user watched:\n1. Heat (1995)\n\nWhat next?"), ("", "  x  ")]
        if any(head + s + middle + u + tail != self._apply_chat_template(s, u) for s, u in probes):
            return None
        return frame

    def count(self, text: str) -> int:
        """Tokens in ``text`` as the tokenizer encodes it by default (special tokens included)."""
        return self.counter.count(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts (``TokenCounter.count_many``)."""
        return self.counter.count_many(texts)

    def fit_many(
        self, requests: Sequence[tuple[Template, Sequence[Any], Callable[[Sequence[Any]], dict[str, Any]], str]]
    ) -> list[tuple[str, str, int] | None]:
        """``fit`` for many ``(template, history, context, answer)`` requests.

        Most prompts fit with their whole history: those are counted in one batch, and only the
        ones over budget are shortened one by one.
        """
        prompts = []
        for template, history, context, _ in requests:
            ctx = self.plain(context(history))
            prompts.append(self.chat(template.render_system(ctx), template.render_user(ctx)))
        completions = [answer + self.end_of_answer for *_, answer in requests]
        counts = self.count_many(prompts + completions)
        n = len(requests)
        return [
            (prompts[i], completions[i], len(req[1])) if counts[i] + counts[n + i] <= self.max_length else self.fit(*req)
            for i, req in enumerate(requests)
        ]

    def fit(
        self,
        template: Template,
        history: Sequence[Any],
        context: Callable[[Sequence[Any]], dict[str, Any]],
        answer: str,
    ) -> tuple[str, str, int] | None:
        """Render a prompt with as much of the history as fits, dropping the oldest first.

        Args:
            template: The task's template.
            history: The history, oldest first (already cut to the maximum history length).
            context: Builds the template context from the kept part of the history.
            answer: The answer text (without the end-of-answer token).

        Returns:
            ``(prompt, completion, kept)`` where ``kept`` is how many of the newest history
            entries are in the prompt, or None when not even an empty history fits.
        """
        completion = answer + self.end_of_answer
        budget = self.max_length - self.count(completion)

        def render(kept: int) -> tuple[str, bool]:
            ctx = self.plain(context(history[len(history) - kept :]))
            prompt = self.chat(template.render_system(ctx), template.render_user(ctx))
            return prompt, self.count(prompt) <= budget

        prompt, ok = render(len(history))
        if ok:
            return prompt, completion, len(history)
        lo, hi = 0, len(history) - 1  # the largest kept count that fits lies in [lo, hi], if any
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate, ok = render(mid)
            if ok:
                best, lo = (candidate, mid), mid + 1
            else:
                hi = mid - 1
        if best is None:
            return None
        return best[0], completion, best[1]
