"""HTTP/1.1 to the engine's unix or plain tcp socket, one connection per call; no API paths."""

from __future__ import annotations

import json
import socket
from typing import Any

from sandbox.engine.error_map import connection_failed, engine_error, unreachable
from sandbox.errors import LaunchError

TIMEOUT_S = 30.0


class RawTransport:
    """HTTP/1.1 to a unix or plain tcp endpoint; one connection per call (the engine is local)."""

    def __init__(self, unix_path: str | None, host: str | None, port: int | None) -> None:
        self._unix = unix_path
        self._host = host
        self._port = port

    @property
    def where(self) -> str:
        return self._unix or f"{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The same endpoint as docker-py spells it."""
        return f"unix://{self._unix}" if self._unix else f"tcp://{self._host}:{self._port}"

    def _socket(self, timeout: float | None) -> socket.socket:
        try:
            if self._unix is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(self._unix)
            else:
                assert self._host is not None and self._port is not None
                sock = socket.create_connection((self._host, self._port), timeout=timeout)
        except OSError as exc:
            raise unreachable(self.where, exc) from exc
        return sock

    def request(
        self, method: str, path: str, body: Any = None, timeout: float | None = TIMEOUT_S
    ) -> tuple[int, bytes]:
        from sandbox.engine import http as _http

        sock = self._socket(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            headers["Connection"] = "close"
            _http.send_request(sock, method, path, data, headers)
            with sock.makefile("rb") as reader:
                resp = _http.read_response(reader, method)
            return resp.status, resp.body
        except OSError as exc:
            raise connection_failed(f"{method} {path.split('?', maxsplit=1)[0]}", exc) from exc
        finally:
            sock.close()

    def send_later(self, method: str, path: str) -> socket.socket:
        """Send a request whose answer is read later (a wait posted before start)."""
        from sandbox.engine import http as _http

        sock = self._socket(None)
        try:
            _http.send_request(sock, method, path, None, {"Connection": "close"})
        except OSError as exc:
            sock.close()
            raise connection_failed(f"{method} {path}", exc) from exc
        return sock

    def hijack(self, path: str) -> tuple[socket.socket, bytes]:
        """POST `path` and take over the connection (attach); returns the socket and early bytes."""
        sock = self._socket(TIMEOUT_S)
        try:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
            )
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise LaunchError(f"attach: the engine closed the connection ({buf[:80]!r})")
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            status = int(head.split(b" ", 2)[1])
            if status not in (101, 200):
                raise engine_error("attach", status, rest)
            sock.settimeout(None)
            return sock, rest
        except OSError as exc:
            sock.close()
            raise connection_failed("attach", exc) from exc
        except BaseException:
            sock.close()
            raise
