"""Runs INSIDE a test container: floods the pulse proxy socket with hostile bytes, prints a report.

usage: pulse_storm.py SOCKET CAPTURE SECONDS SEED

CAPTURE is a recorded session (records: b"C" or b"S", u32 length, bytes); its client-side bytes
are the raw material of the mutated and truncated connections. Every connection is one of the
kinds below, in turn, until SECONDS have passed (each kind at least once). Standard library only:
the base image has python3 and nothing of the sandbox package. Prints one JSON line at the end.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time
from collections.abc import Callable

DESCRIPTOR = struct.Struct("!IIIII")
CONTROL = 0xFFFFFFFF
COOKIE = 256
VERSION = 35
SHM_BIT = 0x80000000
RECV_WAIT_S = 0.5


def u32(value: int) -> bytes:
    return struct.pack("!I", value)


def frame(
    payload: bytes, channel: int = CONTROL, flags: int = 0, length: int | None = None
) -> bytes:
    size = len(payload) if length is None else length
    return DESCRIPTOR.pack(size, channel, 0, 0, flags) + payload


def packet(command: int, tag: int, body: bytes = b"") -> bytes:
    return frame(b"L" + u32(command) + b"L" + u32(tag) + body)


AUTH = packet(8, 0, b"L" + u32(VERSION | SHM_BIT) + b"x" + u32(COOKIE) + bytes(COOKIE))
_NAME = b"storm\0"
SET_CLIENT_NAME = packet(
    9,
    1,
    b"Ptapplication.name\0L" + u32(len(_NAME)) + b"x" + u32(len(_NAME)) + _NAME + b"N",
)


def client_frames(capture: bytes) -> list[bytes]:
    """The client's frames of the capture, one bytes object per frame."""
    stream = bytearray()
    pos = 0
    while pos + 5 <= len(capture):
        n = int.from_bytes(capture[pos + 1 : pos + 5], "big")
        if capture[pos : pos + 1] == b"C":
            stream += capture[pos + 5 : pos + 5 + n]
        pos += 5 + n
    frames: list[bytes] = []
    pos = 0
    while pos + DESCRIPTOR.size <= len(stream):
        length = DESCRIPTOR.unpack_from(stream, pos)[0]
        frames.append(bytes(stream[pos : pos + DESCRIPTOR.size + length]))
        pos += DESCRIPTOR.size + length
    return frames


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 24)):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf)


class Storm:
    """One hostile connection per call; counts what the proxy did with each."""

    def __init__(self, path: str, frames: list[bytes], rng: random.Random) -> None:
        self.path = path
        self.frames = frames
        self.session = b"".join(frames)
        self.rng = rng
        self.counts: dict[str, int] = {}
        self.connections = 0
        self.auth_replies = 0  # AUTH answered: the proxy really relayed to the server
        self.closed_by_proxy = 0  # the proxy hung up while we still had more to say
        self.refused_connect = 0

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(self.path)
        except OSError:
            self.refused_connect += 1
            sock.close()
            return None
        self.connections += 1
        return sock

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        try:
            sock.sendall(data)
        except OSError:  # the proxy already closed: it saw enough to refuse
            return False
        return True

    def _hung_up(self, sock: socket.socket) -> bool:
        """True when the proxy closes the connection within RECV_WAIT_S (answers are read away)."""
        sock.settimeout(RECV_WAIT_S)
        deadline = time.monotonic() + RECV_WAIT_S
        try:
            while time.monotonic() < deadline:
                if not sock.recv(65536):
                    return True
        except TimeoutError:
            return False
        except OSError:
            return True
        return False

    def _auth(self, sock: socket.socket) -> bool:
        if not self._send(sock, AUTH):
            return False
        try:
            head = sock.recv(DESCRIPTOR.size)
        except OSError:
            return False
        if len(head) == DESCRIPTOR.size:
            self.auth_replies += 1
            length = DESCRIPTOR.unpack(head)[0]
            try:
                while length > 0:
                    chunk = sock.recv(length)
                    if not chunk:
                        return False
                    length -= len(chunk)
            except OSError:
                return False
            return True
        return False

    def _garbage(self) -> bytes:
        if self.rng.random() < 0.5:
            return self.rng.randbytes(self.rng.randrange(1, 4096))
        return mutate(self.session, self.rng)

    def run(self, kind: str, build: Callable[[socket.socket], bytes | None]) -> None:
        sock = self._connect()
        if sock is None:
            return
        self.counts[kind] = self.counts.get(kind, 0) + 1
        with sock:
            data = build(sock)
            if data is None:
                return
            sent = self._send(sock, data)
            if not sent or self._hung_up(sock):
                self.closed_by_proxy += 1

    # -- the kinds ------------------------------------------------------------------------

    def random_bytes(self, _: socket.socket) -> bytes:
        return self.rng.randbytes(self.rng.randrange(1, 16384))

    def random_frames(self, _: socket.socket) -> bytes:
        out = bytearray()
        for _i in range(self.rng.randrange(1, 8)):
            channel = CONTROL if self.rng.random() < 0.6 else self.rng.randrange(4)
            out += frame(self.rng.randbytes(self.rng.randrange(1, 512)), channel)
        return bytes(out)

    def mutated(self, _: socket.socket) -> bytes:
        return mutate(self.session, self.rng)

    def oversized(self, _: socket.socket) -> bytes:
        length = self.rng.choice([256 * 1024 + 1, 16 * 1024 * 1024 + 1, 0x7FFFFFFF, 0xFFFFFFFF])
        channel = self.rng.choice([CONTROL, 0, 1])
        return frame(self.rng.randbytes(4096), channel, length=length)

    def truncated(self, sock: socket.socket) -> None:
        whole = self.rng.choice(self.frames)
        cut = self.rng.randrange(1, len(whole))
        self._send(sock, whole[:cut])
        # The client goes away mid-frame; nothing of the half frame may reach the server.
        sock.shutdown(socket.SHUT_WR)
        self._hung_up(sock)

    def auth_then_garbage(self, sock: socket.socket) -> bytes | None:
        if not self._auth(sock):
            return None
        return self._garbage()

    def ready_then_garbage(self, sock: socket.socket) -> bytes | None:
        if not self._auth(sock) or not self._send(sock, SET_CLIENT_NAME):
            return None
        return self._garbage()


def main() -> int:
    path, capture_path, seconds, seed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    with open(capture_path, "rb") as f:
        frames = client_frames(f.read())
    storm = Storm(path, frames, random.Random(int(seed)))
    kinds: list[tuple[str, Callable[[socket.socket], bytes | None]]] = [
        ("random-bytes", storm.random_bytes),
        ("random-frames", storm.random_frames),
        ("mutated", storm.mutated),
        ("oversized", storm.oversized),
        ("truncated", storm.truncated),
        ("auth-then-garbage", storm.auth_then_garbage),
        ("ready-then-garbage", storm.ready_then_garbage),
    ]
    deadline = time.monotonic() + float(seconds)
    rounds = 0
    while rounds == 0 or time.monotonic() < deadline:
        for kind, build in kinds:
            storm.run(kind, build)
        rounds += 1
    report = {
        "rounds": rounds,
        "connections": storm.connections,
        "kinds": storm.counts,
        "auth_replies": storm.auth_replies,
        "closed_by_proxy": storm.closed_by_proxy,
        "refused_connect": storm.refused_connect,
        "client_frames": len(frames),
    }
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
