"""Catches writes while a parser runs: an audit hook, armed only inside `no_writes()`; no I/O.

A parser of outside input may read, never write: any file opened for writing or created,
renamed, removed or truncated while the guard is armed is recorded and reported as a finding.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CHANGES = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.mkdir",
        "os.rmdir",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.chmod",
        "os.chown",
        "os.utime",
        "shutil.copyfile",
        "shutil.rmtree",
        "shutil.move",
        "subprocess.Popen",
        "os.system",
        "socket.connect",
    }
)


class _State:
    armed = False
    seen: list[str] = []  # noqa: RUF012 - one process-wide record, reset by no_writes()
    installed = False


def _is_write(event: str, args: tuple[Any, ...]) -> bool:
    if event == "open":
        mode, flags = (*args, None, None)[1:3]
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return True
        return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
    return event in _CHANGES


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _State.armed and _is_write(event, args):
        _State.seen.append(f"{event} {args[:2]!r}")


@contextmanager
def no_writes() -> Iterator[list[str]]:
    """Yields the list that collects every write attempted inside the block."""
    if not _State.installed:
        sys.addaudithook(_hook)
        _State.installed = True
    _State.seen = []
    _State.armed = True
    try:
        yield _State.seen
    finally:
        _State.armed = False
