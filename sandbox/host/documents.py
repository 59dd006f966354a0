"""Bounded JSON and TOML decoding of outside input (size, depth, numbers, UTF-8); pure, no I/O.

Every parser of a file, label or answer that sandbox did not write itself decodes through here:
`json.loads` and `tomllib.loads` alone raise RecursionError on deep nesting, ValueError on a
5000-digit number and OverflowError later on a float that is infinite. Here every such input is
one error, built by the caller's factory `fail(location, problem)`, and nothing else escapes:

- the size is checked first, then the bracket depth by a scan that skips strings and comments
  (so the decoders never recurse deeper than `max_depth`), then the text is decoded;
- the decoded tree is walked once, without recursion: depth again (TOML dotted keys nest
  without brackets), integers within 2**64 in magnitude, floats finite (JSON), no lone
  surrogates in JSON strings or keys, no duplicate JSON keys unless `duplicates` allows them.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable
from typing import Any, Final

# (location, problem) -> the caller's error. location is "line L, column C" for a TOML syntax
# error and "" otherwise; a problem names its own byte or character offset where it has one.
Fail = Callable[[str, str], Exception]

MAX_DEPTH: Final = 32  # arrays and tables inside each other; every format here needs < 10
MAX_INT: Final = 2**64
_MAX_DIGITS: Final = 21  # a JSON integer literal: 2**64 has 20 digits, plus a sign

_JSON_SKIP = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_TOML_SKIP = re.compile(
    r'"""(?:[^\\]|\\.)*?"""'  # multi-line basic string (escapes may hide quotes)
    r"|'''.*?'''"  # multi-line literal string
    r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'  # basic string
    r"|'[^'\n]*'"  # literal string
    r"|#[^\n]*",  # comment
    re.S,
)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_TOML_POS = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")


class _RefusedError(ValueError):
    """Raised inside the decoders' hooks; turned into the caller's error."""


def bracket_depth(text: str, skip: re.Pattern[str] = _JSON_SKIP, stop: int = -1) -> int:
    """The deepest nesting of [ and { outside strings (and comments, for TOML's `skip`); the
    scan ends as soon as it passes `stop` (when given)."""
    depth = deepest = 0
    for c in _NOT_BRACKET.sub("", skip.sub("", text)):
        depth += 1 if c in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest == stop:
                break
    return deepest


def _text(data: bytes | str, fail: Fail, max_bytes: int) -> str:
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise fail("", f"is {size} bytes, larger than allowed (at most {max_bytes})")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail("", f"not UTF-8 at byte {exc.start}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RefusedError(f"duplicate JSON key {key[:64]!r}")
        seen[key] = value
    return seen


def _json_int(literal: str) -> int:
    if len(literal) > _MAX_DIGITS:
        raise _RefusedError(f"number of {len(literal)} digits (at most {_MAX_DIGITS - 1})")
    return int(literal)


def _json_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _RefusedError(f"number {literal[:24]}... is out of range")
    return value


def _json_constant(name: str) -> Any:
    raise _RefusedError(f"{name} is not valid JSON")


def _check_depth(text: str, fail: Fail, max_depth: int, skip: re.Pattern[str]) -> None:
    if bracket_depth(text, skip, stop=max_depth + 1) > max_depth:
        raise fail("", f"nested more than {max_depth} levels deep")


def load_json(
    data: bytes | str,
    fail: Fail,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    duplicates: bool = False,
) -> Any:
    """The JSON value in `data`, or `fail(...)` raised for any problem at all."""
    text = _text(data, fail, max_bytes)
    _check_depth(text, fail, max_depth, _JSON_SKIP)
    try:
        value = json.loads(
            text,
            object_pairs_hook=None if duplicates else _no_duplicates,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_json_constant,
        )
    except json.JSONDecodeError as exc:
        raise fail("", f"invalid JSON at offset {exc.pos}: {exc.msg}") from None
    except _RefusedError as exc:
        raise fail("", f"invalid JSON: {exc}") from None
    except (RecursionError, MemoryError, ValueError) as exc:  # backstops; the checks come first
        raise fail("", f"cannot decode JSON: {type(exc).__name__}") from None
    _check_tree(value, fail, max_depth, strings=True)
    return value


def load_toml(data: bytes | str, fail: Fail, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The TOML document in `data` (a dict), or `fail(...)` raised for any problem at all."""
    text = _text(data, fail, max_bytes)
    _check_depth(text, fail, max_depth, _TOML_SKIP)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POS.match(str(exc))
        if match is None:
            raise fail("", f"TOML syntax error: {exc}") from None
        where = f"line {match['line']}, column {match['col']}"
        raise fail(where, f"TOML syntax error: {match['msg']}") from None
    except (RecursionError, MemoryError, ValueError) as exc:  # e.g. a 5000-digit integer
        raise fail("", f"cannot decode TOML: {_short(exc)}") from None
    _check_tree(doc, fail, max_depth, strings=False)
    return doc


def _short(exc: BaseException) -> str:
    text = str(exc).split(";", 1)[0]
    return text[:120] or type(exc).__name__


def _check_tree(value: Any, fail: Fail, max_depth: int, *, strings: bool) -> None:
    """Depth, integer range and (JSON) lone surrogates, over the whole tree, iteratively."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict | list):
            if depth >= max_depth:
                raise fail("", f"nested more than {max_depth} levels deep")
            items = node.values() if isinstance(node, dict) else node
            todo.extend((item, depth + 1) for item in items)
            if strings and isinstance(node, dict):
                todo.extend((key, depth + 1) for key in node)
        elif isinstance(node, int) and not isinstance(node, bool):
            if not -MAX_INT <= node <= MAX_INT:
                raise fail("", "an integer is out of range (at most 2**64 in magnitude)")
        elif strings and isinstance(node, str) and _SURROGATE.search(node):
            raise fail("", f"a string holds a lone surrogate: {node[:40]!r}")
