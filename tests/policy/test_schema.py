"""The one schema reader: field paths, known keys, typed fields, errors through the factory."""

from __future__ import annotations

import enum

import pytest

from sandbox.policy.schema import FieldPath, Reader, is_int, root, type_name


class _ProblemError(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


class _Color(enum.StrEnum):
    RED = "red"


QUOTED = Reader(fail=_ProblemError, quote_keys=True)
RAW = Reader(fail=_ProblemError, not_table=lambda _v: "must be an object", sort_known=False)


def test_paths_quote_only_keys_that_are_not_bare_and_only_when_asked() -> None:
    path = root("capabilities", "storage").key("a b").index(2)
    assert path.render(quote=True) == 'capabilities.storage."a b"[2]'
    assert path.render(quote=False) == "capabilities.storage.a b[2]"
    assert FieldPath().render(quote=True) == ""
    assert QUOTED.render("already.written") == "already.written"


def test_unknown_keys_are_reported_before_missing_ones_in_the_readers_order() -> None:
    with pytest.raises(_ProblemError) as err:
        QUOTED.keys({"zz": 1}, root("app"), ("id",), ("b", "a"))
    assert (err.value.path, err.value.problem) == ("app.zz", "unknown key (known: a, b, id)")
    with pytest.raises(_ProblemError) as err:
        RAW.keys({"zz": 1}, root(), ("id",), ("b", "a"))
    assert err.value.problem == "unknown key (known: id, b, a)"
    with pytest.raises(_ProblemError) as err:
        RAW.keys({"b": 1}, root("x"), ("id",), ("b",))
    assert (err.value.path, err.value.problem) == ("x.id", "is required")


def test_tables_and_typed_fields_word_their_problems() -> None:
    cases = [
        (lambda: QUOTED.table([], "t"), "must be a table, not an array"),
        (lambda: RAW.table(1, "t"), "must be an object"),
        (lambda: QUOTED.string(True, "s"), "must be a string, not a boolean"),
        (lambda: QUOTED.string(1, "s", "own words"), "own words"),
        (lambda: QUOTED.length("abc", "s", 2), "is 3 characters long (at most 2)"),
        (lambda: QUOTED.boolean("yes", "b"), "must be true or false, not a string"),
        (lambda: QUOTED.integer(True, "i", 0, 9), "must be an integer, not a boolean"),
        (lambda: QUOTED.integer(10, "i", 0, 9), "must be between 0 and 9, not 10"),
        (lambda: QUOTED.array({}, "a", 3), "must be an array, not a table"),
        (lambda: QUOTED.array([1, 2], "a", 1), "has 2 items (at most 1)"),
        (lambda: QUOTED.strings(["a", 1], "l", "a list of names"), "a list of names"),
        (lambda: QUOTED.choice(["red"], "c", _Color, lambda v: f"not {v!r}"), "not ['red']"),
        (lambda: QUOTED.lookup("blue", "c", {"red": 1}, lambda v: f"not {v!r}"), "not 'blue'"),
    ]
    for read, problem in cases:
        with pytest.raises(_ProblemError) as err:
            read()
        assert err.value.problem == problem
    assert QUOTED.choice("red", "c", _Color, repr) is _Color.RED
    assert QUOTED.lookup("red", "c", {"red": 1}, repr) == 1


def test_type_names_and_integers() -> None:
    assert [type_name(v) for v in (None, 1.5, (), {}, b"")] == [
        "null", "a float", "an array", "a table", "bytes"
    ]  # fmt: skip
    assert is_int(3) and not is_int(True) and not is_int(3.0)
