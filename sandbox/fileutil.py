"""Atomic file replacement for every writer of state and config files; knows no file formats."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = False) -> None:
    """Replace `path` with `data` in one rename: readers and crashes see the old or the new file.

    The temporary file is made beside `path` (one filesystem, so the rename is atomic),
    exclusively (never through a planted link) and with `mode` before any byte is written.
    `durable` fsyncs it before the rename: for files the user keeps across reboots; state that
    lives only as long as its processes do not pay for it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
