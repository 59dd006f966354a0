"""X11 probe: bounded handshake with the user's cookie, then python-xlib; changes nothing."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sandbox.errors import ProviderError
from sandbox.host import xauth
from sandbox.host.bounded_io import (
    Deadline,
    Missing,
    connect_unix,
    describe_os_error,
    recv_exact,
    run_bounded,
)
from sandbox.policy.facts import X11Facts

SOCKET_DIR = "/tmp/.X11-unix"
SECURITY = "SECURITY"
XRES = "X-Resource"

# Same grammar as python-xlib and libX11: [proto/][host]:display[.screen]
_DISPLAY_RE = re.compile(
    r"^(?:(?P<proto>tcp|unix)/)?(?P<host>[-:a-zA-Z0-9._]*):(?P<dno>[0-9]+)(?:\.(?P<screen>[0-9]+))?$"
)


@dataclass(frozen=True)
class DisplayName:
    text: str  # as given, e.g. "unix:99.0"
    number: int
    screen: int
    host: str  # "" or "unix" for the local socket

    @property
    def local(self) -> bool:
        return self.host in ("", "unix")

    @property
    def socket_path(self) -> str:
        return f"{SOCKET_DIR}/X{self.number}"


def parse_display(text: str) -> DisplayName | Missing:
    """Parse DISPLAY; a host other than "" or "unix" means TCP, which the sandbox cannot share."""
    match = _DISPLAY_RE.match(text)
    if match is None:
        return Missing(f"cannot parse DISPLAY={text!r} (expected [host]:N[.S])")
    host = match["host"] or ""
    if match["proto"] == "tcp" and not host:
        return Missing(f"DISPLAY={text!r} names TCP without a host")
    if match["proto"] == "tcp":
        host = host or "localhost"
    return DisplayName(
        text=text, number=int(match["dno"]), screen=int(match["screen"] or 0), host=host
    )


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def setup_request(auth_name: bytes, auth_data: bytes) -> bytes:
    """The X11 connection setup request, little-endian, protocol 11.0."""
    head = struct.pack("<BxHHHHxx", ord("l"), 11, 0, len(auth_name), len(auth_data))
    return head + _pad(auth_name) + _pad(auth_data)


@dataclass(frozen=True)
class SetupHeader:
    status: int  # 0 Failed, 1 Success, 2 Authenticate
    reason_length: int  # only meaningful when Failed
    extra_bytes: int  # how many bytes follow the 8-byte header


def parse_setup_header(head: bytes) -> SetupHeader:
    status, reason_length, _major, _minor, extra_words = struct.unpack("<BBHHH", head[:8])
    return SetupHeader(status, reason_length, extra_words * 4)


@dataclass(frozen=True)
class SetupResult:
    accepted: bool
    reason: str | None = None  # the server's words when it refused
    vendor: str | None = None


def parse_setup_reply(header: SetupHeader, body: bytes) -> SetupResult:
    """Vendor on success; the server's refusal text otherwise."""
    if header.status == 1:
        # vendor length sits 16 bytes into the body, the vendor string at 32
        if len(body) < 32:
            return SetupResult(True)
        (vendor_length,) = struct.unpack_from("<H", body, 16)
        vendor = body[32 : 32 + vendor_length].decode("latin-1", "replace")
        return SetupResult(True, vendor=vendor or None)
    text = body[: header.reason_length] if header.status == 0 else body.rstrip(b"\0")
    return SetupResult(False, reason=text.decode("latin-1", "replace").strip() or None)


class ExtensionSource(Protocol):
    """What the probe needs from a python-xlib Display (tests pass a fake)."""

    def query_extension(self, name: str) -> object | None: ...


@dataclass(frozen=True)
class Extensions:
    security: bool
    xres: bool


def read_extensions(display: ExtensionSource) -> Extensions:
    """python-xlib answers None for an extension the server lacks."""
    return Extensions(
        security=display.query_extension(SECURITY) is not None,
        xres=display.query_extension(XRES) is not None,
    )


def xauthority_path(env: Mapping[str, str]) -> str | None:
    if env.get("XAUTHORITY"):
        return env["XAUTHORITY"]
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".Xauthority") if home else None


def handshake(
    sock: socket.socket, cookie: xauth.XauthEntry | None, deadline: Deadline
) -> SetupResult:
    """Send the setup request and read the whole reply before the deadline."""
    name, data = (cookie.name.encode(), cookie.data) if cookie is not None else (b"", b"")
    sock.settimeout(deadline.left())
    sock.sendall(setup_request(name, data))
    header = parse_setup_header(recv_exact(sock, 8, deadline))
    body = recv_exact(sock, header.extra_bytes, deadline) if header.extra_bytes else b""
    return parse_setup_reply(header, body)


def _open_xlib(name: str) -> Extensions:
    from Xlib import display as xdisplay

    d = xdisplay.Display(name)
    try:
        return read_extensions(d)
    finally:
        d.close()


def probe(env: Mapping[str, str], timeout: float) -> X11Facts:
    """Facts about the user's X display; returns within `timeout` even if the server hangs."""
    deadline = Deadline(timeout)
    text = env.get("DISPLAY", "")
    if not text:
        return X11Facts(False, "DISPLAY is not set")
    name = parse_display(text)
    if isinstance(name, Missing):
        return X11Facts(False, name.reason, display=text)
    base = X11Facts(False, display=text, display_number=name.number)
    if not name.local:
        return dataclasses.replace(
            base,
            reason=f"DISPLAY={text} is a TCP display (host {name.host}, port {6000 + name.number});"
            " only a local socket can be shared with a sandbox",
        )
    auth_path = xauthority_path(env)
    cookie = None
    have_file = False
    if auth_path is not None:
        try:
            with open(auth_path, "rb") as f:
                blob = f.read()
            have_file = True
            cookie = xauth.find_cookie(
                xauth.decode(blob), name.number, socket.gethostname().encode()
            )
        except (OSError, ProviderError):
            pass  # no usable file: try without a cookie, as libX11 does
    base = dataclasses.replace(
        base, socket_path=name.socket_path, xauthority=auth_path if have_file else None
    )

    try:
        sock = connect_unix(name.socket_path, deadline)
    except OSError as exc:
        return dataclasses.replace(base, reason=describe_os_error(exc, name.socket_path, timeout))
    # The raw connection stays open while Xlib connects: a server that resets when its last
    # client leaves must not be reset by the probe itself.
    try:
        try:
            setup = handshake(sock, cookie, deadline)
        except OSError as exc:
            return dataclasses.replace(
                base, reason=describe_os_error(exc, name.socket_path, timeout)
            )
        if not setup.accepted:
            why = (
                f"authorization refused: {setup.reason}"
                if setup.reason
                else ("authorization refused")
            )
            if cookie is None:
                why += f" (no cookie for display {name.number} in {auth_path})"
            return dataclasses.replace(base, reason=why, vendor=setup.vendor)
        try:
            ext = run_bounded(lambda: _open_xlib(f":{name.number}.{name.screen}"), deadline.left())
        except TimeoutError:
            return dataclasses.replace(
                base, reason=f"python-xlib got no answer within {timeout:g} s", vendor=setup.vendor
            )
        except Exception as exc:  # python-xlib's errors are many and untyped; the text says enough
            why = f"python-xlib could not connect: {exc}"
            if env.get("XAUTHORITY") != os.environ.get("XAUTHORITY"):
                why += " (python-xlib reads XAUTHORITY from the process environment, not this one)"
            return dataclasses.replace(base, reason=why, vendor=setup.vendor)
    finally:
        sock.close()
    return dataclasses.replace(
        base,
        available=True,
        security_extension=ext.security,
        xres_extension=ext.xres,
        vendor=setup.vendor,
    )
