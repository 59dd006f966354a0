"""The attach stream's multiplexed frames copied to stdout/stderr; reads a socket, owns nothing."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

STDOUT, STDERR = 1, 2


def read_frames(sock: socket.socket, early: bytes, out: Mapping[int, Any]) -> None:
    """Copy the engine's multiplexed attach stream to `out[STDOUT]`/`out[STDERR]` until EOF."""
    buf = early
    while True:
        while len(buf) >= 8:
            kind, size = buf[0], int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            payload, buf = buf[8 : 8 + size], buf[8 + size :]
            target = out.get(STDERR if kind == STDERR else STDOUT)
            if target is not None:
                target.write(payload)
                target.flush()
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
