"""The CLI's command table matches what each command module registers; lazy parsing works."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from sandbox.cli import COMMANDS, build_parser


def _registered(module: str) -> dict[str, str | None]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(f"sandbox.cli.{module}").register(sub)
    return {a.dest: a.help for a in sub._choices_actions}


@pytest.mark.parametrize("module", sorted({c.module for c in COMMANDS}))
def test_table_rows_match_the_module(module: str) -> None:
    rows = {c.name: c.help for c in COMMANDS if c.module == module}
    assert _registered(module) == rows


def test_every_command_word_parses_with_only_its_module() -> None:
    for c in COMMANDS:
        sub = next(
            a for a in build_parser([c.name])._actions if isinstance(a, argparse._SubParsersAction)
        )
        assert list(sub.choices) and c.name in sub.choices
        assert sorted(sub.choices) == sorted(x.name for x in COMMANDS)


def test_run_imports_no_other_command_module() -> None:
    code = (
        "import sys; from sandbox.cli import build_parser; build_parser(['run', 'x']); "
        "print(sorted(m for m in sys.modules if m.startswith('sandbox.cli.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['sandbox.cli.run_cmd']"
