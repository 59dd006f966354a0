"""X11 probe: DISPLAY parsing, the setup handshake bytes, extension reading with a fake Display."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest

from sandbox.host import x11_display, xauth
from sandbox.host.bounded_io import Deadline, Missing
from sandbox.probes import x11


@pytest.mark.parametrize(
    ("text", "number", "screen"),
    [(":99", 99, 0), (":99.0", 99, 0), ("unix:99", 99, 0), (":0.1", 0, 1), ("unix/:7", 7, 0)],
)
def test_local_displays(text: str, number: int, screen: int) -> None:
    name = x11_display.parse_display(text)
    assert isinstance(name, x11_display.DisplayName)
    assert (name.number, name.screen, name.local) == (number, screen, True)
    assert name.socket_path == f"/tmp/.X11-unix/X{number}"


@pytest.mark.parametrize("text", ["localhost:10.0", "remote.example:3", "tcp/box:1", "10.0.0.1:0"])
def test_hostnames_mean_tcp(text: str) -> None:
    name = x11_display.parse_display(text)
    assert isinstance(name, x11_display.DisplayName) and not name.local


@pytest.mark.parametrize("text", ["", "99", ":x", "host", ":1.a"])
def test_malformed_displays_are_reasons(text: str) -> None:
    assert isinstance(x11_display.parse_display(text), Missing)


def test_probe_says_tcp_displays_are_not_shared() -> None:
    facts = x11.probe({"DISPLAY": "remote.example:3"}, 1.0)
    assert not facts.available and facts.reason is not None
    assert "TCP" in facts.reason and "6003" in facts.reason
    assert facts.display_number == 3


def test_probe_without_display_and_with_a_missing_socket(tmp_path: Path) -> None:
    assert x11.probe({}, 1.0).reason == "DISPLAY is not set"
    facts = x11.probe({"DISPLAY": ":65000", "HOME": str(tmp_path)}, 1.0)
    assert not facts.available and facts.reason is not None
    assert facts.socket_path == "/tmp/.X11-unix/X65000"
    assert facts.socket_path in facts.reason


def test_setup_request_layout() -> None:
    req = x11.setup_request(b"MIT-MAGIC-COOKIE-1", b"\x01" * 16)
    assert req[0:1] == b"l"
    major, minor, name_len, data_len = struct.unpack_from("<HHHH", req, 2)
    assert (major, minor, name_len, data_len) == (11, 0, 18, 16)
    assert len(req) == 12 + 20 + 16  # the 18-byte name is padded to 20
    assert req[12:30] == b"MIT-MAGIC-COOKIE-1"


def success_reply(vendor: bytes) -> bytes:
    body = struct.pack(
        "<IIIIHHBBBBBBBB4x", 1, 0, 0, 0, len(vendor), 0xFFFF, 0, 0, 0, 0, 32, 32, 8, 255
    )
    body += vendor + b"\0" * (-len(vendor) % 4)
    return struct.pack("<BxHHH", 1, 11, 0, len(body) // 4) + body


def failed_reply(reason: bytes) -> bytes:
    padded = reason + b"\0" * (-len(reason) % 4)
    return struct.pack("<BBHHH", 0, len(reason), 11, 0, len(padded) // 4) + padded


def test_success_reply_gives_the_vendor() -> None:
    reply = success_reply(b"The X.Org Foundation")
    header = x11.parse_setup_header(reply[:8])
    assert header.status == 1 and header.extra_bytes == len(reply) - 8
    result = x11.parse_setup_reply(header, reply[8:])
    assert result.accepted and result.vendor == "The X.Org Foundation"


def test_failed_reply_gives_the_servers_words() -> None:
    reply = failed_reply(b"Authorization required, but no authorization protocol specified\n")
    result = x11.parse_setup_reply(x11.parse_setup_header(reply[:8]), reply[8:])
    assert not result.accepted
    assert result.reason == "Authorization required, but no authorization protocol specified"


class FakeDisplay:
    """Answers query_extension as python-xlib does: an object when present, None when not."""

    def __init__(self, extensions: set[str]) -> None:
        self.extensions = extensions
        self.asked: list[str] = []

    def query_extension(self, name: str) -> object | None:
        self.asked.append(name)
        return object() if name in self.extensions else None


@pytest.mark.parametrize(
    "present", [set(), {"SECURITY"}, {"X-Resource"}, {"SECURITY", "X-Resource", "RANDR"}]
)
def test_extensions_come_from_query_extension(present: set[str]) -> None:
    display = FakeDisplay(present)
    ext = x11.read_extensions(display)
    assert ext.security == ("SECURITY" in present)
    assert ext.xres == ("X-Resource" in present)
    assert set(display.asked) == {"SECURITY", "X-Resource"}


def fake_server(path: Path, reply: bytes) -> tuple[socket.socket, threading.Thread, list[bytes]]:
    """A unix socket that reads one setup request and answers `reply`."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(4096))
            conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread, received


def test_handshake_sends_the_users_cookie_and_reads_the_refusal(tmp_path: Path) -> None:
    path = tmp_path / "X"
    server, thread, received = fake_server(path, failed_reply(b"Invalid MIT-MAGIC-COOKIE-1 key"))
    cookie = xauth.XauthEntry(xauth.Family.LOCAL, b"host", "5", xauth.MIT_MAGIC_COOKIE, b"k" * 16)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    try:
        result = x11.handshake(client, cookie, Deadline(1.0))
    finally:
        client.close()
        thread.join(1)
        server.close()
    assert not result.accepted and result.reason == "Invalid MIT-MAGIC-COOKIE-1 key"
    assert b"MIT-MAGIC-COOKIE-1" in received[0] and b"k" * 16 in received[0]


def test_xauthority_path_prefers_the_environment() -> None:
    assert x11.xauthority_path({"XAUTHORITY": "/x/auth", "HOME": "/h"}) == "/x/auth"
    assert x11.xauthority_path({"HOME": "/h"}) == "/h/.Xauthority"
