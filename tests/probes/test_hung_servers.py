"""Probes are bounded: a local socket that accepts and never answers cannot hold them."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.probes import docker, probe_host, pulse, x11

TIMEOUT_S = 1.0
ONE_PROBE_BUDGET_S = 1.1
WHOLE_HOST_BUDGET_S = 2.0
X11_SOCKET_DIR = Path("/tmp/.X11-unix")


class HungServer:
    """Accepts every connection, reads nothing, answers nothing, until closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(16)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    @property
    def accepted(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self._listener.close()
        for conn in self._held:
            conn.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def hung(path: Path) -> Iterator[HungServer]:
    server = HungServer(path)
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def hung_display() -> Iterator[tuple[str, HungServer]]:
    """A free display number whose socket in /tmp/.X11-unix hangs."""
    try:
        X11_SOCKET_DIR.mkdir(mode=0o1777, exist_ok=True)
    except OSError:
        pytest.skip("cannot create /tmp/.X11-unix")
    for number in range(470, 530):
        path = X11_SOCKET_DIR / f"X{number}"
        if path.exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        try:
            server = HungServer(path)
        except OSError:
            continue
        try:
            yield f":{number}", server
        finally:
            server.close()
        return
    pytest.skip("no free X display number in 470..529")


def test_hung_engine_socket(tmp_path: Path) -> None:
    with hung(tmp_path / "docker.sock") as server:
        env = {"DOCKER_HOST": f"unix://{server.path}", "HOME": str(tmp_path)}
        started = time.monotonic()
        facts = docker.probe(env, TIMEOUT_S)
        elapsed = time.monotonic() - started
        assert server.accepted >= 1  # it really got through to the hung server
    assert not facts.available
    assert facts.reason is not None and "no answer" in facts.reason
    assert elapsed < ONE_PROBE_BUDGET_S, f"docker probe took {elapsed:.2f} s"


def test_hung_pulse_socket(tmp_path: Path) -> None:
    with hung(tmp_path / "native") as server:
        started = time.monotonic()
        facts = pulse.probe({"PULSE_SERVER": f"unix:{server.path}"}, TIMEOUT_S)
        elapsed = time.monotonic() - started
        assert server.accepted >= 1
    assert not facts.available
    assert facts.reason is not None and "no answer" in facts.reason
    assert elapsed < ONE_PROBE_BUDGET_S, f"pulse probe took {elapsed:.2f} s"


def test_hung_x_display(tmp_path: Path) -> None:
    with hung_display() as (display, server):
        env = {"DISPLAY": display, "HOME": str(tmp_path)}
        started = time.monotonic()
        facts = x11.probe(env, TIMEOUT_S)
        elapsed = time.monotonic() - started
        assert server.accepted >= 1
    assert not facts.available
    assert facts.reason is not None and "no answer" in facts.reason
    assert elapsed < ONE_PROBE_BUDGET_S, f"x11 probe took {elapsed:.2f} s"


def test_probe_host_is_bounded_with_all_three_hung(tmp_path: Path) -> None:
    with (
        hung_display() as (display, _),
        hung(tmp_path / "native") as pulse_server,
        hung(tmp_path / "docker.sock") as engine,
    ):
        env = dict(
            os.environ,
            DISPLAY=display,
            PULSE_SERVER=f"unix:{pulse_server.path}",
            DOCKER_HOST=f"unix://{engine.path}",
            HOME=str(tmp_path),
        )
        started = time.monotonic()
        facts = probe_host(env, TIMEOUT_S)
        elapsed = time.monotonic() - started
    assert elapsed < WHOLE_HOST_BUDGET_S, f"probe_host took {elapsed:.2f} s"
    for section in (facts.docker, facts.x11, facts.audio):
        assert not section.available
        assert section.reason
