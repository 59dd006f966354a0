"""A minimal HTTP/1.1 client over one connected socket, for the engine API; no TLS, no policy."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import BinaryIO

# Why not http.client: importing it pulls in ssl and the email parser (~18 ms), paid on every
# `sandbox run`. The engine is local and speaks plain HTTP/1.1; this reads exactly what it
# sends: Content-Length, chunked, or close-delimited bodies. Callers translate the errors.

MAX_HEAD = 64 * 1024  # status line and headers together
MAX_BODY = 256 * 1024**2  # a JSON answer; image streams do not come through here
_STATUS = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: (.*))?")
_LENGTH = re.compile(r"[0-9]{1,12}")
_CHUNK = re.compile(rb"\s*([0-9A-Fa-f]{1,12})\s*(?:;.*)?")


class BadResponseError(OSError):
    """The peer did not answer well-formed HTTP/1.1 (callers turn it into a reason/error)."""


class ClosedError(BadResponseError):
    """The peer closed the connection before a status line."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes


def send_request(
    sock: socket.socket,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body or b'')}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))


def _line(reader: BinaryIO, budget: list[int]) -> bytes:
    line = reader.readline(budget[0] + 1)
    budget[0] -= len(line)
    if budget[0] < 0:
        raise BadResponseError("response head too long")
    return line


@dataclass(frozen=True)
class Head:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names


def read_response(reader: BinaryIO, method: str = "GET") -> Response:
    """One response from `reader` (sock.makefile("rb")); the body is read whole."""
    head = read_head(reader)
    return read_body(reader, method, head)


def read_body(reader: BinaryIO, method: str, head: Head) -> Response:
    """The rest of a response whose head read_head() returned."""
    return Response(
        head.status, head.reason, head.headers, _body(reader, method, head.status, head.headers)
    )


def read_head(reader: BinaryIO) -> Head:
    """The status line and headers only (a long-poll's answer comes later in its body)."""
    budget = [MAX_HEAD]
    status_line = _line(reader, budget)
    if not status_line:
        raise ClosedError("the peer closed the connection without answering")
    match = _STATUS.fullmatch(status_line.rstrip(b"\r\n"))
    if match is None:
        raise BadResponseError(f"not an HTTP status line: {status_line[:40]!r}")
    status, reason = int(match[1]), (match[2] or b"").decode("latin-1")
    headers: dict[str, str] = {}
    while True:
        line = _line(reader, budget)
        if not line:
            raise BadResponseError("the peer closed the connection inside the headers")
        if line in (b"\r\n", b"\n"):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BadResponseError(f"malformed header line: {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    return Head(status, reason, headers)


def _exact(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise BadResponseError(f"the body ended after {len(data)} of {n} bytes")
    return data


def _chunked(reader: BinaryIO) -> bytes:
    out = bytearray()
    while True:
        size_line = reader.readline(1024)
        match = _CHUNK.fullmatch(size_line.rstrip(b"\r\n"))
        if match is None:
            raise BadResponseError(f"bad chunk size {size_line[:20]!r}")
        size = int(match[1], 16)
        if size == 0:
            while reader.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out)
        if len(out) + size > MAX_BODY:
            raise BadResponseError(f"body larger than {MAX_BODY} bytes")
        out += _exact(reader, size)
        reader.readline(1024)  # the CRLF after each chunk


def _body(reader: BinaryIO, method: str, status: int, headers: dict[str, str]) -> bytes:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _chunked(reader)
    length = headers.get("content-length")
    if length is not None:
        if not _LENGTH.fullmatch(length) or int(length) > MAX_BODY:
            raise BadResponseError(f"bad Content-Length {length[:24]!r}")
        return _exact(reader, int(length))
    data = reader.read(MAX_BODY + 1)  # close-delimited
    if len(data) > MAX_BODY:
        raise BadResponseError(f"body larger than {MAX_BODY} bytes")
    return data
