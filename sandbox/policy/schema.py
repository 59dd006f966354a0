"""The one strict reader of decoded TOML/JSON documents (tables, keys, typed fields); pure, no I/O.

Every parser of a document (the manifest, policy layers, the capability catalog, the bundle
header) reads through a `Reader`; each keeps its own error class and wording by handing the
reader an error factory and, where its words differ, the problem text.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# (the rendered field path, the problem) -> the caller's error, raised by the reader
Fail = Callable[[str, str], Exception]
Problem = Callable[[object], str]  # the offending value -> what is wrong with it


@dataclass(frozen=True)
class FieldPath:
    """Where a value sits in a document: the keys and array indices from its root."""

    parts: tuple[str | int, ...] = ()

    def key(self, name: str) -> FieldPath:
        return FieldPath((*self.parts, name))

    def index(self, i: int) -> FieldPath:
        return FieldPath((*self.parts, i))

    def render(self, *, quote: bool) -> str:
        """`app.command[0]`; with `quote`, keys that are not bare TOML keys in JSON quotes."""
        out = ""
        for part in self.parts:
            if isinstance(part, int):
                out += f"[{part}]"
                continue
            shown = json.dumps(part) if quote and not _BARE_KEY.fullmatch(part) else part
            out = f"{out}.{shown}" if out else shown
        return out


Where = FieldPath | str  # a str is a path already written out (a label name, a public API's)


def root(*keys: str) -> FieldPath:
    return FieldPath(keys)


def type_name(value: object) -> str:
    """How a message names the type of a decoded value: "a string", "an array", "null"."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__


def is_int(value: object) -> bool:
    """An integer that is not a bool (bool is an int subclass; `true` is not a number)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _must_be_table(value: object) -> str:
    return f"must be a table, not {type_name(value)}"


@dataclass(frozen=True)
class Reader:
    """Reads one kind of document: its error factory, how paths are written, its words."""

    fail: Fail
    quote_keys: bool = False
    not_table: Problem = _must_be_table
    sort_known: bool = True  # "known: ..." sorted, or in the order the caller lists them

    def render(self, where: Where) -> str:
        return where if isinstance(where, str) else where.render(quote=self.quote_keys)

    def error(self, where: Where, problem: str) -> Exception:
        return self.fail(self.render(where), problem)

    def table(self, value: object, where: Where) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(where, self.not_table(value))
        return value

    def keys(
        self,
        table: Mapping[str, Any],
        where: FieldPath,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
    ) -> None:
        """Unknown keys first (in the document's order), then the first missing required one."""
        known = required + optional
        shown = ", ".join(sorted(known) if self.sort_known else known)
        for key in table:
            if key not in known:
                raise self.error(where.key(str(key)), f"unknown key (known: {shown})")
        for key in required:
            if key not in table:
                raise self.error(where.key(key), "is required")

    def string(self, value: object, where: Where, problem: str | None = None) -> str:
        if not isinstance(value, str):
            raise self.error(where, problem or f"must be a string, not {type_name(value)}")
        return value

    def length(self, text: str, where: Where, max_len: int) -> str:
        if len(text) > max_len:
            raise self.error(where, f"is {len(text)} characters long (at most {max_len})")
        return text

    def boolean(self, value: object, where: Where) -> bool:
        if not isinstance(value, bool):
            raise self.error(where, f"must be true or false, not {type_name(value)}")
        return value

    def integer(self, value: object, where: Where, lo: int, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(where, f"must be an integer, not {type_name(value)}")
        if not lo <= value <= hi:
            raise self.error(where, f"must be between {lo} and {hi}, not {value}")
        return value

    def array(self, value: object, where: Where, max_items: int) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise self.error(where, f"must be an array, not {type_name(value)}")
        if len(value) > max_items:
            raise self.error(where, f"has {len(value)} items (at most {max_items})")
        return list(value)

    def strings(self, value: object, where: Where, problem: str) -> list[str]:
        """A list whose every item is a string; anything else is `problem`."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(where, problem)
        return value

    def choice(self, value: object, where: Where, kind: type[_E], problem: Problem) -> _E:
        """The member of the string enum `kind` whose value is `value`."""
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
        raise self.error(where, problem(value))

    def lookup(self, value: object, where: Where, table: Mapping[str, _T], problem: Problem) -> _T:
        """`table[value]` for a string `value` that is one of its keys."""
        if not isinstance(value, str) or value not in table:
            raise self.error(where, problem(value))
        return table[value]
