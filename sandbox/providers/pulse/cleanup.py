"""Removes an app's samples from the server at teardown: one short blocking client; no rules."""

# The proxy's own connection to the server, after every client connection has ended: AUTH (no
# SHM, the launcher's cookie; PulseAudio also sees the proxy's uid by SCM_CREDENTIALS), then
# SET_CLIENT_NAME, then one REMOVE_SAMPLE per name. An ERROR for a REMOVE_SAMPLE (NOENTITY: the
# app removed it itself, or a newer instance replaced and removed it) still counts as done.
# Any failure (no server, a timeout, a malformed answer) returns False and removes nothing
# more: the ledger keeps the names and the next proxy of the app tries again.

from __future__ import annotations

import socket
import time
from pathlib import Path

from sandbox.errors import ProviderError
from sandbox.providers.pulse.protocol import (
    COOKIE_LENGTH,
    NO_TAG,
    PROTOCOL_VERSION,
    SERVER_MAX_FRAME,
    Command,
    FrameDecoder,
    Packet,
    parse_packet,
)
from sandbox.providers.pulse.tagstruct import U32, Arbitrary, Proplist, Str, prop_str

TIMEOUT_S = 2.0
READ_CHUNK = 64 * 1024


def remove_samples(
    upstream: Path,
    names: tuple[str, ...],
    app_id: str,
    cookie: bytes = bytes(COOKIE_LENGTH),
    timeout_s: float = TIMEOUT_S,
) -> bool:
    """REMOVE_SAMPLE each of `names` on the server at `upstream`; True once all are answered."""
    if not names:
        return True
    props = Proplist(
        (
            ("application.name", prop_str("sandbox")),
            ("application.id", prop_str(app_id)),
        )
    )
    deadline = time.monotonic() + timeout_s
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(upstream))
            conn = _Connection(sock, deadline)
            if not conn.ask(Packet(Command.AUTH, 0, (U32(PROTOCOL_VERSION), Arbitrary(cookie)))):
                return False
            if not conn.ask(Packet(Command.SET_CLIENT_NAME, 1, (props,))):
                return False
            for i, name in enumerate(names):
                sock.sendall(Packet(Command.REMOVE_SAMPLE, 2 + i, (Str(name),)).encode())
            return all(conn.answer(2 + i) is not None for i in range(len(names)))
    except (OSError, ProviderError):
        return False


class _Connection:
    """Request/answer over a blocking socket, skipping the server's own commands."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._decoder = FrameDecoder(SERVER_MAX_FRAME, SERVER_MAX_FRAME)
        self._answers: dict[int, int] = {}  # tag -> REPLY or ERROR

    def ask(self, pkt: Packet) -> bool:
        """Send `pkt`; True if the server answered it with REPLY."""
        self._sock.sendall(pkt.encode())
        return self.answer(pkt.tag) == Command.REPLY

    def answer(self, tag: int) -> int | None:
        """The command (REPLY or ERROR) answering `tag`; None if the connection ended first."""
        while tag not in self._answers:
            if time.monotonic() > self._deadline:
                raise ProviderError("pulse: the server did not answer in time")
            data = self._sock.recv(READ_CHUNK)
            if not data:
                return None
            for frame in self._decoder.feed(data):
                if not frame.is_control:
                    continue
                pkt = parse_packet(frame)
                if pkt.tag != NO_TAG and pkt.command in (Command.REPLY, Command.ERROR):
                    self._answers[pkt.tag] = pkt.command
        return self._answers.pop(tag)
