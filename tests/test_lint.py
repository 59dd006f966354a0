"""The code standard as a test: `ruff check .` and strict `mypy` (pyproject's config) exit 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    # Both are in the `test` extra, so CI must have them; elsewhere a missing one only skips.
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return [path]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_check_is_clean() -> None:
    done = _run([*_tool("ruff"), "check", "--no-cache", "."])
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean() -> None:
    _tool("mypy")
    # Through this interpreter, so mypy sees the tests' packages; no cache in the shared checkout.
    done = _run([sys.executable, "-m", "mypy", "--cache-dir", os.devnull])
    assert done.returncode == 0, done.stdout + done.stderr
