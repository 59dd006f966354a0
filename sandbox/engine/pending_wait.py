"""A container wait posted before start and read after exit; one socket, no other engine calls."""

from __future__ import annotations

import json
import socket

from sandbox.engine.error_map import connection_failed, engine_error
from sandbox.engine.transport import TIMEOUT_S
from sandbox.errors import LaunchError


class PendingWait:
    """A wait request sent before start, so an instant exit is never missed.

    Both engines register the waiter before they answer the head (Docker's postContainersWait,
    Podman's compat wait) and send the exit code in the body. Only after the head has come is
    the waiter sure to exist: a `next-exit` waiter made after a quick app's exit would wait for
    ever, so the head is read here, before the caller starts the container."""

    def __init__(self, sock: socket.socket, cid: str) -> None:
        from sandbox.engine import http as _http

        self._sock = sock
        self._cid = cid
        try:
            sock.settimeout(TIMEOUT_S)
            self._reader = sock.makefile("rb")
            self._head = _http.read_head(self._reader)
            sock.settimeout(None)  # the body comes when the app exits
        except OSError as exc:
            sock.close()
            raise connection_failed(f"wait {cid[:12]}", exc) from exc

    def result(self) -> int:
        from sandbox.engine import http as _http

        try:
            with self._reader as reader:
                resp = _http.read_body(reader, "POST", self._head)
        except OSError as exc:
            raise connection_failed(f"wait {self._cid[:12]}", exc) from exc
        finally:
            self._sock.close()
        if resp.status != 200:
            raise engine_error(f"wait {self._cid[:12]}", resp.status, resp.body)
        data = json.loads(resp.body)
        if data.get("Error") and data["Error"].get("Message"):
            raise LaunchError(f"wait {self._cid[:12]}: {data['Error']['Message']}")
        return int(data.get("StatusCode", 1))

    def close(self) -> None:
        self._reader.close()
        self._sock.close()
