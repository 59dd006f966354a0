"""Fixtures of the engine client's tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # short: tmp_path can pass the AF_UNIX path limit
    with tempfile.TemporaryDirectory(prefix="sbx-", dir="/tmp") as d:
        yield Path(d)
