"""PulseProxy's connection cap and the per-app slot budget, over real unix sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pulse_helpers import UnixServer, held_then_killed

from sandbox.providers.pulse.proxy import ProxyLimits, PulseProxy, SlotBudget
from sandbox.providers.pulse.rules import AudioGrant

GRANT = AudioGrant("org.example.Capped", "Capped")


def _wait(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class _Upstream(UnixServer):
    """A server that accepts and holds connections and never speaks: the proxy only needs to
    reach it for a connection to stay open."""


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[_Upstream]:
    server = _Upstream(tmp_path / "upstream")
    yield server
    server.close()


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def _connect(proxy: PulseProxy, opened: list[socket.socket]) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(proxy.socket_path))
    opened.append(s)
    return s


def _closed_at_once(s: socket.socket) -> bool:
    """True when the proxy hangs up on `s` without a word; False when it keeps it open."""
    s.settimeout(0.5)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False


def _proxy(
    tmp_path: Path, upstream: _Upstream, name: str, limits: ProxyLimits, shared_dir: Path | None
) -> PulseProxy:
    proxy = PulseProxy(tmp_path / name, upstream.path, GRANT, limits=limits, shared_dir=shared_dir)
    proxy.start()
    return proxy


@pytest.mark.parametrize("shared", [False, True])
def test_third_connection_is_closed_and_the_count_drops_back(
    tmp_path: Path, upstream: _Upstream, clients: list[socket.socket], shared: bool
) -> None:
    proxy = _proxy(
        tmp_path,
        upstream,
        "proxy",
        limits=ProxyLimits(max_connections=2),
        shared_dir=tmp_path / "slots" if shared else None,
    )
    try:
        first = _connect(proxy, clients)
        second = _connect(proxy, clients)
        _wait(lambda: proxy.connections == 2, "two relayed connections")
        assert _closed_at_once(_connect(proxy, clients))
        assert proxy.connections == 2
        assert not _closed_at_once(second)
        first.close()
        _wait(lambda: proxy.connections == 1, "the count to drop after a close")
        assert not _closed_at_once(_connect(proxy, clients))
        assert proxy.connections == 2
    finally:
        proxy.stop()


def test_connection_cap_is_per_app_across_proxies(
    tmp_path: Path, upstream: _Upstream, clients: list[socket.socket]
) -> None:
    """Two instances of one app (two proxies on one slot dir) share the app's cap."""
    limits = ProxyLimits(max_connections=2)
    slots = tmp_path / "app-slots"
    a = _proxy(tmp_path, upstream, "a", limits=limits, shared_dir=slots)
    b = _proxy(tmp_path, upstream, "b", limits=limits, shared_dir=slots)
    other = _proxy(tmp_path, upstream, "other", limits=limits, shared_dir=tmp_path / "other-slots")
    try:
        on_a = _connect(a, clients)
        _connect(b, clients)
        _wait(lambda: a.connections == 1 and b.connections == 1, "one connection on each")
        assert _closed_at_once(_connect(b, clients))
        assert _closed_at_once(_connect(a, clients))
        assert not _closed_at_once(_connect(other, clients)), "another app has its own cap"
        on_a.close()
        _wait(lambda: a.connections == 0, "a's connection to end")
        assert not _closed_at_once(_connect(b, clients))
        assert b.connections == 2
    finally:
        for p in (a, b, other):
            p.stop()
    after = SlotBudget(slots / "connections", 2)
    assert after.acquire() and after.acquire(), "stopped proxies hold no slot"
    after.close()


def test_slot_budget_is_shared_and_released(tmp_path: Path) -> None:
    one, two = SlotBudget(tmp_path, 3), SlotBudget(tmp_path, 3)
    assert one.acquire() and one.acquire()
    assert two.acquire()
    assert not two.acquire() and not one.acquire()
    one.release()
    assert two.acquire()
    assert (one.used, two.used) == (1, 2)
    two.close()
    assert one.acquire() and one.acquire()
    assert not one.acquire()


def test_slot_budget_of_a_killed_holder_is_freed(tmp_path: Path) -> None:
    """A SIGKILLed launcher never runs its release: the kernel drops its flocks."""
    setup = (
        "from sandbox.providers.pulse.proxy import SlotBudget\n"
        "b = SlotBudget(d, 2)\n"
        "assert b.acquire() and b.acquire()"
    )
    with held_then_killed(setup, tmp_path):
        mine = SlotBudget(tmp_path, 2)
        assert not mine.acquire(), "the other process holds every slot"
    assert mine.acquire() and mine.acquire()
