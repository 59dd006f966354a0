"""Shared helpers for the pulse proxy unit tests: fixture replay and handshakes; no sockets."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from sandbox.providers.pulse.filter import Output, PulseFilter
from sandbox.providers.pulse.protocol import (
    PROTOCOL_VERSION,
    Command,
    Frame,
    FrameDecoder,
    Packet,
    parse_packet,
)
from sandbox.providers.pulse.rules import AudioGrant
from sandbox.providers.pulse.tagstruct import U32, Arbitrary, Proplist, prop_str

FIXTURES = Path(__file__).parent / "fixtures"
GRANT = AudioGrant("com.example.Game", "Example Game", host_pid=4242)
RECORD_GRANT = AudioGrant("com.example.Game", "Example Game", record=True, host_pid=4242)


def records(name: str) -> Iterator[tuple[str, bytes]]:
    """(direction, chunk) pairs of a captured session; direction "C" or "S"."""
    data = (FIXTURES / f"{name}.bin").read_bytes()
    pos = 0
    while pos < len(data):
        mark = data[pos : pos + 1].decode()
        (n,) = struct.unpack("!I", data[pos + 1 : pos + 5])
        yield mark, data[pos + 5 : pos + 5 + n]
        pos += 5 + n


def frames(name: str, direction: str) -> list[Frame]:
    dec = FrameDecoder(1 << 24, 1 << 24)
    out: list[Frame] = []
    for mark, chunk in records(name):
        if mark == direction:
            out.extend(dec.feed(chunk))
    return out


def packets_of(data: bytes) -> list[Packet]:
    return [parse_packet(f) for f in FrameDecoder(1 << 24, 1 << 24).feed(data) if f.is_control]


def replay(filt: PulseFilter, name: str) -> tuple[list[Output], list[Output]]:
    """Feed a captured session through `filt`, translating the server's tags to the upstream
    tags the filter chose; server answers to requests the filter did not forward are skipped."""
    client_outs: list[Output] = []
    server_outs: list[Output] = []
    server_dec = FrameDecoder(1 << 24, 1 << 24)
    tagmap: dict[int, int] = {}
    for mark, chunk in records(name):
        if mark == "C":
            client_outs.append(filt.from_client(chunk))
            for upstream, pending in filt.state.pending.items():
                if pending.client_tag is not None:
                    tagmap[pending.client_tag] = upstream
            continue
        for frame in server_dec.feed(chunk):
            data = frame.encode()
            if frame.is_control:
                pkt = parse_packet(frame)
                if pkt.command in (Command.REPLY, Command.ERROR):
                    if pkt.tag not in tagmap:
                        continue
                    data = Packet(pkt.command, tagmap.pop(pkt.tag), pkt.args).encode()
            server_outs.append(filt.from_server(data))
    return client_outs, server_outs


def handshake(filt: PulseFilter, client_index: int = 7) -> None:
    """AUTH and SET_CLIENT_NAME with the server's answers, leaving `filt` READY."""
    filt.from_client(
        Packet(Command.AUTH, 0, (U32(PROTOCOL_VERSION), Arbitrary(bytes(256)))).encode()
    )
    filt.from_server(Packet(Command.REPLY, 0, (U32(PROTOCOL_VERSION),)).encode())
    props = Proplist((("application.name", prop_str("x")),))
    filt.from_client(Packet(Command.SET_CLIENT_NAME, 1, (props,)).encode())
    filt.from_server(Packet(Command.REPLY, 1, (U32(client_index),)).encode())


class UnixServer:
    """A unix socket server on a thread; `handle(conn)` gets each connection (default: hold it
    open without a word)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(16)
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        pass

    def close(self) -> None:
        # shutdown wakes the blocked accept(); close alone does not on Linux
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join()
        for conn in self._held:
            conn.close()


@contextlib.contextmanager
def held_then_killed(setup: str, path: Path) -> Iterator[None]:
    """Inside: another process ran `setup` (Python, with `Path` imported and the dir as `d`)
    and sleeps; on leaving it is SIGKILLed, as a launcher can be."""
    script = f"import sys, time\nfrom pathlib import Path\nd = Path(sys.argv[1])\n{setup}\n"
    script += "print('held', flush=True)\ntime.sleep(60)\n"
    holder = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        yield
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
