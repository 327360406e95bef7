"""Option dataclasses as the one source of defaults and help texts, and the argparse flags made from them.

A field declared with :func:`option` carries its help text (and, where argparse needs it, a flag
name, choices or a parser). :func:`add_arguments` turns the fields into flags whose default is
"not given", and :func:`from_args` builds the dataclass from the flags that were given, so a
default is written once, in the dataclass, and the ``--help`` text shows it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | Any = _MISSING,
    flag: str | None = None,
    choices: Iterable[str] | None = None,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    many: bool = False,
    cli: bool = True,
) -> Any:
    """A dataclass field with what its command-line flag needs.

    Args:
        default: The default value (or give ``default_factory``).
        help: One line for ``--help``; the default is appended to it.
        default_factory: As in ``dataclasses.field``.
        flag: The flag, when not ``--field-name`` (e.g. ``--no-progress`` for ``progress=True``).
        choices: The values accepted.
        parse: Turns the flag's text into the value (default: the field's type).
        metavar: argparse's metavar.
        many: The flag takes one or more values (``nargs="+"``).
        cli: False keeps the field off the command line.
    """
    metadata = {"help": help, "flag": flag, "choices": tuple(choices) if choices else None, "parse": parse,
                "metavar": metavar, "many": many, "cli": cli}  # fmt: skip
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "Path": Path, "Path | None": Path,
                                          "str | None": str, "int | None": int, "float | None": float}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = ()) -> None:
    """Add a flag for every field of ``cls`` declared with :func:`option` (except ``skip``)."""
    skipped = set(skip)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("help") or not meta.get("cli", True) or f.name in skipped:
            continue
        default = _default(f)
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        required = default is _MISSING
        text = meta["help"]
        if f.type == "bool":
            # a flag switches the default: --overwrite (default off), --no-progress (default on)
            kwargs["action"] = "store_false" if default else "store_true"
        else:
            kwargs["type"] = meta["parse"] or _TYPES.get(str(f.type), str)
            if meta["many"]:
                kwargs["nargs"] = "+"
            if not required and default is not None:
                text += f" (default: {_shown(default)})"
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        parser.add_argument(flag, help=text, required=required, **kwargs)


def from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """An instance of ``cls`` from the flags that were given, plus ``values``; defaults for the rest."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return cls(**{**given, **values})


def parse_mapping(text: str) -> dict[str, str]:
    """``role=column,role=column`` as a dict (an argparse type)."""
    out = {}
    for pair in (p for p in text.split(",") if p.strip()):
        role, sep, column = pair.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise argparse.ArgumentTypeError(f"expected ROLE=COLUMN, got {pair!r}")
        out[role.strip()] = column.strip()
    return out


def parse_list(text: str) -> list[str]:
    """``a,b,c`` as a list; empty items dropped (an argparse type)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_ints(text: str) -> list[int]:
    """``1,5,10`` as a list of ints (an argparse type)."""
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
