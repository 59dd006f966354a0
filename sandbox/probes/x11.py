"""X11 probe: bounded handshake with the user's cookie, then python-xlib; changes nothing."""

from __future__ import annotations

import dataclasses
import os
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
from sandbox.host.x11_display import DisplayName, parse_display
from sandbox.policy.facts import X11Facts

SECURITY = "SECURITY"
XRES = "X-Resource"


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


def _local_display(env: Mapping[str, str]) -> DisplayName | X11Facts:
    """The local display DISPLAY names, or the facts saying why there is none."""
    text = env.get("DISPLAY", "")
    if not text:
        return X11Facts(False, "DISPLAY is not set")
    name = parse_display(text)
    if isinstance(name, Missing):
        return X11Facts(False, name.reason, display=text)
    if not name.local:
        return X11Facts(
            False,
            f"DISPLAY={text} is a TCP display (host {name.host}, port {6000 + name.number});"
            " only a local socket can be shared with a sandbox",
            display=text,
            display_number=name.number,
        )
    return name


def _user_cookie(auth_path: str | None, number: int) -> tuple[xauth.XauthEntry | None, bool]:
    """The cookie libX11 would send, and whether the Xauthority file could be read at all."""
    if auth_path is None:
        return None, False
    try:
        with open(auth_path, "rb") as f:
            blob = f.read()
    except OSError:
        return None, False  # no usable file: try without a cookie, as libX11 does
    try:
        entries = xauth.decode(blob)
    except ProviderError:
        return None, True
    return xauth.find_cookie(entries, number, socket.gethostname().encode()), True


def _refused(
    setup: SetupResult, cookie: xauth.XauthEntry | None, name: DisplayName, auth: str | None
) -> str:
    why = f"authorization refused: {setup.reason}" if setup.reason else "authorization refused"
    if cookie is None:
        why += f" (no cookie for display {name.number} in {auth})"
    return why


def _xlib_facts(
    base: X11Facts, name: DisplayName, env: Mapping[str, str], deadline: Deadline
) -> X11Facts:
    """Ask python-xlib for the extensions, bounded; its failure is a reason, never a raise."""
    try:
        ext = run_bounded(lambda: _open_xlib(f":{name.number}.{name.screen}"), deadline.left())
    except TimeoutError:
        return dataclasses.replace(
            base, reason=f"python-xlib got no answer within {deadline.timeout:g} s"
        )
    except Exception as exc:  # python-xlib's errors are many and untyped; the text says enough
        why = f"python-xlib could not connect: {exc}"
        if env.get("XAUTHORITY") != os.environ.get("XAUTHORITY"):
            why += " (python-xlib reads XAUTHORITY from the process environment, not this one)"
        return dataclasses.replace(base, reason=why)
    return dataclasses.replace(
        base, available=True, security_extension=ext.security, xres_extension=ext.xres
    )


def probe(env: Mapping[str, str], timeout: float) -> X11Facts:
    """Facts about the user's X display; returns within `timeout` even if the server hangs."""
    deadline = Deadline(timeout)
    name = _local_display(env)
    if isinstance(name, X11Facts):
        return name
    auth_path = xauthority_path(env)
    cookie, have_file = _user_cookie(auth_path, name.number)
    base = X11Facts(
        False,
        display=name.text,
        display_number=name.number,
        socket_path=name.socket_path,
        xauthority=auth_path if have_file else None,
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
        base = dataclasses.replace(base, vendor=setup.vendor)
        if not setup.accepted:
            return dataclasses.replace(base, reason=_refused(setup, cookie, name, auth_path))
        return _xlib_facts(base, name, env, deadline)
    finally:
        sock.close()
