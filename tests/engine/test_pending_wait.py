"""PendingWait: wait_later() returns only once the engine answered the head (waiter registered)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from sandbox.engine.adapter import DockerAdapter
from sandbox.errors import LaunchError

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
BODY = b'{"StatusCode":7}'


def _engine(path: Path, head_delay: float, events: list[str]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.recv(65536)
            time.sleep(head_delay)  # the engine registering its waiter
            events.append("head")
            conn.sendall(HEAD)
            time.sleep(0.05)
            conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_wait_later_returns_after_the_head_and_reads_the_code(tmp_path: Path) -> None:
    events: list[str] = []
    sock = tmp_path / "engine.sock"
    thread = _engine(sock, 0.2, events)
    pending = DockerAdapter.from_env(f"unix://{sock}").wait_later("c" * 64)
    events.append("returned")  # the caller starts the container only now
    assert events == ["head", "returned"]
    assert pending.result() == 7
    thread.join(timeout=5)


def test_an_engine_that_closes_before_the_head_is_a_launch_error(tmp_path: Path) -> None:
    sock = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    server.listen(1)

    def close_at_once() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()
        server.close()

    threading.Thread(target=close_at_once, daemon=True).start()
    with pytest.raises(LaunchError, match="wait cccccccccccc"):
        DockerAdapter.from_env(f"unix://{sock}").wait_later("c" * 64)
