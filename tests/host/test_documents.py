"""The bounded JSON/TOML decoder: limits hold before decoding, and every failure is the caller's."""

from __future__ import annotations

import pytest

from sandbox.host.documents import bracket_depth, load_json, load_toml


class _Error(Exception):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}|{problem}")


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    assert bracket_depth('{"a": "[[[[[[", "b": [[1]]}') == 3
    assert bracket_depth('"\\"[[[" ') == 0
    from sandbox.host.documents import _TOML_SKIP  # the TOML grammar of what to skip

    toml = 'a = "[[[" # [[[[\nb = \'[[\'\nc = """[[\n[["""\nd = [[1]]'
    assert bracket_depth(toml, _TOML_SKIP) == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 33 + "]" * 33, "nested more than 32 levels deep"),
        ('{"a": 1, "a": 2}', "duplicate JSON key 'a'"),
        ("1" * 30, "number of 30 digits"),
        ("1e999", "out of range"),
        ("NaN", "NaN is not valid JSON"),
        ('"\\ud800"', "lone surrogate"),
        ("[1,", "invalid JSON at offset 3"),
    ],
)
def test_json_problems_are_the_callers_error(text: str, problem: str) -> None:
    with pytest.raises(_Error, match=problem):
        load_json(text, _Error, max_bytes=1 << 20)


def test_json_limits_and_options() -> None:
    assert load_json("[" * 32 + "]" * 32, _Error, max_bytes=100) is not None
    assert load_json('{"a": 1, "a": 2}', _Error, max_bytes=100, duplicates=True) == {"a": 2}
    with pytest.raises(_Error, match="at most 10"):
        load_json("[1, 2, 3, 4]", _Error, max_bytes=10)
    with pytest.raises(_Error, match="not UTF-8 at byte 1"):
        load_json(b'"\xff"', _Error, max_bytes=10)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("a = " + "[" * 5000 + "]" * 5000, "", "nested more than 32"),
        ("a" + ".a" * 40 + " = 1", "", "nested more than 32"),  # no brackets: the tree walk
        ("a = " + "9" * 5000, "", "cannot decode TOML"),
        ("a = 99999999999999999999999", "", "out of range"),
        ("a = 1 1\n", "line 1, column 7", "TOML syntax error"),
    ],
)
def test_toml_problems_are_the_callers_error(text: str, where: str, problem: str) -> None:
    with pytest.raises(_Error, match=f"^{where}\\|.*{problem}"):
        load_toml(text, _Error, max_bytes=1 << 20)
