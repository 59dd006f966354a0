"""The minimal engine HTTP client: body framings, keep-alive, and malformed answers."""

from __future__ import annotations

import io
import socket

import pytest

from sandbox.engine import http as _http


def _read(raw: bytes, method: str = "GET") -> _http.Response:
    return _http.read_response(io.BytesIO(raw), method)


def test_content_length_body_and_headers() -> None:
    r = _read(b"HTTP/1.1 201 Created\r\nContent-Type: x\r\nContent-Length: 5\r\n\r\nhello")
    assert (r.status, r.reason, r.headers["content-type"], r.body) == (
        201,
        "Created",
        "x",
        b"hello",
    )


def test_chunked_body_with_trailer() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
    )
    assert _read(raw).body == b"abcde"


def test_close_delimited_and_no_body_statuses() -> None:
    assert _read(b"HTTP/1.0 200 OK\r\n\r\nuntil eof").body == b"until eof"
    assert _read(b"HTTP/1.1 204 No Content\r\n\r\n").body == b""
    assert _read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD").body == b""


def test_two_responses_on_one_reader() -> None:
    reader = io.BytesIO(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"
        b"HTTP/1.1 404 NF\r\nContent-Length: 1\r\n\r\nB"
    )
    assert _http.read_response(reader).body == b"A"
    second = _http.read_response(reader)
    assert (second.status, second.body) == (404, b"B")


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (_http.MAX_HEAD + 10) + b"\r\n\r\n",
    ],
)
def test_malformed_answers_raise(raw: bytes) -> None:
    with pytest.raises(_http.BadResponseError):
        _read(raw)


def test_closed_before_status_is_its_own_error() -> None:
    with pytest.raises(_http.ClosedError):
        _read(b"")


def test_send_request_frames_post_with_length() -> None:
    a, b = socket.socketpair()
    with a, b:
        _http.send_request(a, "POST", "/x?y=1", b"{}", {"Content-Type": "application/json"})
        a.shutdown(socket.SHUT_WR)
        sent = b.makefile("rb").read()
    assert sent == (
        b"POST /x?y=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
