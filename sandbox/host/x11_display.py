"""X11 display names and socket paths, the one parser the probe and provider share; pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.host.bounded_io import Missing

# Where X servers put their local sockets, on the host and (for the app) inside the container.
SOCKET_DIR = "/tmp/.X11-unix"

# Same grammar as python-xlib and libX11: [proto/][host]:display[.screen]
_DISPLAY_RE = re.compile(
    r"^(?:(?P<proto>tcp|unix)/)?(?P<host>[-:a-zA-Z0-9._]*):(?P<dno>[0-9]+)(?:\.(?P<screen>[0-9]+))?$"
)


def socket_path(number: int) -> str:
    """The local socket of display `number`: "/tmp/.X11-unix/X99"."""
    return f"{SOCKET_DIR}/X{number}"


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
        return socket_path(self.number)


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
