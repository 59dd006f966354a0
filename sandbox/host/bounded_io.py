"""Bounded socket helpers shared by the probes; failures become plain reasons, never raise."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True)
class Missing:
    """A component is absent or unusable; `reason` is a sentence a user can act on."""

    reason: str


class Deadline:
    """One probe's time budget; every blocking call gets what is left of it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._end = time.monotonic() + timeout

    def left(self) -> float:
        # A socket timeout of 0 means non-blocking, not "expired": keep a tiny positive floor.
        return max(0.001, self._end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self._end


def describe_os_error(exc: BaseException, what: str, timeout: float) -> str:
    """A plain reason for a failed connect or read on `what` (a socket path or host:port)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {what} within {timeout:g} s"
    if isinstance(exc, FileNotFoundError):
        return f"no socket at {what}"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens on {what} (connection refused)"
    if isinstance(exc, PermissionError):
        return f"permission denied on {what}"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return f"{what} closed the connection"
    if isinstance(exc, OSError) and exc.errno == errno.ENOTSOCK:
        return f"{what} is not a socket"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect to {what}: {exc.strerror}"
    return f"cannot connect to {what}: {exc}"


def connect_unix(path: str, deadline: Deadline) -> socket.socket:
    """A connected AF_UNIX stream socket whose every operation times out with the deadline."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(deadline.left())
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def check_unix(path: str, deadline: Deadline) -> Missing | None:
    """None when something accepts connections on `path`; sends nothing."""
    try:
        connect_unix(path, deadline).close()
    except OSError as exc:
        return Missing(describe_os_error(exc, path, deadline.timeout))
    return None


def recv_exact(sock: socket.socket, size: int, deadline: Deadline) -> bytes:
    """Read exactly `size` bytes before the deadline, else raise TimeoutError or an OSError."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        if deadline.expired():
            raise TimeoutError("deadline passed")
        sock.settimeout(deadline.left())
        chunk = sock.recv(size - got)
        if not chunk:
            raise ConnectionResetError("peer closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class _Worker(Generic[T]):
    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.value: T | None = None
        self.error: BaseException | None = None
        self.done = False

    def __call__(self) -> None:
        try:
            self.value = self.fn()
            self.done = True
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc


def run_bounded(fn: Callable[[], T], timeout: float) -> T:
    """Run a library call that has no timeout of its own in a daemon thread.

    Raises TimeoutError when it has not returned within `timeout` (the thread is abandoned, which
    is why it is a daemon), and re-raises whatever `fn` raised.
    """
    worker = _Worker(fn)
    thread = threading.Thread(target=worker, daemon=True, name="sandbox-probe-call")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if worker.error is not None:
        raise worker.error
    assert worker.done
    return cast(T, worker.value)
