"""Integration: `sandbox probe --json` against real servers, stopped servers and wedged sockets."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from integration.components import (
    X11_SOCKET_DIR,
    PrivateServer,
    PulseServer,
    WaylandDisplay,
    X11Display,
    free_display_number,
    hung_server,
    private_pulseaudio,
    private_weston,
    private_xvfb,
    require_binary,
)

HUNG_BUDGET_S = 2.0  # the whole command, interpreter start-up included


def sandbox_argv() -> list[str]:
    # The console script is what users run; fall back to the module when it is not on PATH.
    script = shutil.which("sandbox")
    return [script] if script else [sys.executable, "-m", "sandbox"]


def run_probe(env: Mapping[str, str]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [*sandbox_argv(), "probe", "--json"],
        env=dict(env),
        capture_output=True,
        timeout=30,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    facts: dict[str, Any] = json.loads(proc.stdout)
    return facts, elapsed


@pytest.fixture(scope="module")
def probed() -> dict[str, Any]:
    """One probe of the environment the tests run in (the harness's, or the real desktop's)."""
    facts, _ = run_probe(os.environ)
    return facts


def test_probe_finds_the_engine(docker_client_url: str, probed: dict[str, Any]) -> None:
    docker = probed["docker"]
    assert docker["available"], docker.get("reason")
    if "DOCKER_HOST" in os.environ:
        assert docker["endpoint"] == docker_client_url
    assert docker["version"]
    assert docker["api_version"]


def test_probe_finds_x11_with_security_and_xres(
    x11_display: X11Display, probed: dict[str, Any]
) -> None:
    x11 = probed["x11"]
    assert x11["available"], x11.get("reason")
    assert x11["display"] == x11_display.display
    assert x11["socket_path"] == x11_display.socket_path
    assert x11["security_extension"] is True
    assert x11["xres_extension"] is True


def test_probe_finds_wayland(wayland_display: WaylandDisplay, probed: dict[str, Any]) -> None:
    wayland = probed["wayland"]
    assert wayland["available"], wayland.get("reason")
    assert wayland["display"] == wayland_display.display
    assert wayland["socket_path"] == wayland_display.socket_path


def test_probe_finds_audio_and_its_default_sink(
    pulse_server: PulseServer, probed: dict[str, Any], real_desktop: bool
) -> None:
    audio = probed["audio"]
    assert audio["available"], audio.get("reason")
    assert audio["socket_path"] == pulse_server.socket_path
    pactl = require_binary("pactl")
    server_says = subprocess.run(
        [pactl, "get-default-sink"], capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()
    assert audio["default_sink"] == server_says
    if not real_desktop:
        assert audio["default_sink"] == "test_null"  # the null sink the harness made default


ServerFactory = Callable[[Path], contextlib.AbstractContextManager[PrivateServer]]
SERVERS: list[tuple[str, ServerFactory]] = [
    ("x11", private_xvfb),
    ("wayland", private_weston),
    ("audio", private_pulseaudio),
]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
@pytest.mark.parametrize(("section", "factory"), SERVERS, ids=[s for s, _ in SERVERS])
def test_probe_reports_a_stopped_server_unavailable(
    tmp_path: Path, section: str, factory: ServerFactory, stop_signal: signal.Signals
) -> None:
    # A private server, never the harness's: the shared ones serve the other tests.
    with factory(tmp_path) as server:
        env = dict(os.environ, **server.env)
        running, _ = run_probe(env)
        assert running[section]["available"], running[section].get("reason")
        # SIGKILL leaves the socket file behind, as a crashed server does.
        server.stop(stop_signal)
        stopped, _ = run_probe(env)
    facts = stopped[section]
    assert facts["available"] is False
    assert isinstance(facts.get("reason"), str)
    assert facts["reason"].strip()


@contextlib.contextmanager
def hung_x11_display() -> Iterator[str]:
    """A display number whose socket accepts and never answers."""
    X11_SOCKET_DIR.mkdir(mode=0o1777, exist_ok=True)
    n = free_display_number(300, 400)
    with hung_server(X11_SOCKET_DIR / f"X{n}"):
        yield f":{n}"


def test_probe_is_bounded_when_servers_hang(tmp_path: Path) -> None:
    with (
        hung_x11_display() as display,
        hung_server(tmp_path / "pulse-hung") as pulse,
        hung_server(tmp_path / "docker-hung.sock") as engine,
    ):
        env = dict(
            os.environ,
            DISPLAY=display,
            PULSE_SERVER=f"unix:{pulse.path}",
            DOCKER_HOST=f"unix://{engine.path}",
        )
        facts, elapsed = run_probe(env)
    assert elapsed < HUNG_BUDGET_S, f"probe took {elapsed:.2f} s with hung servers"
    for section in ("x11", "audio", "docker"):
        assert facts[section]["available"] is False, section
        assert facts[section].get("reason", "").strip(), section


@pytest.mark.parametrize("kind", ["no-file", "stale-socket"])
def test_probe_reports_an_unreachable_engine(tmp_path: Path, kind: str) -> None:
    # A dead engine: nothing at the path, or a socket file whose listener is gone (as after a
    # crash), so connect() is refused.
    path = tmp_path / "dead.sock"
    if kind == "stale-socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()
        assert path.exists()
    facts, _ = run_probe(dict(os.environ, DOCKER_HOST=f"unix://{path}"))
    docker = facts["docker"]
    assert docker["available"] is False
    assert isinstance(docker.get("reason"), str) and docker["reason"].strip()


def test_probe_names_podman_behind_its_socket(podman_client_url: str) -> None:
    facts, _ = run_probe(dict(os.environ, DOCKER_HOST=podman_client_url))
    docker = facts["docker"]
    assert docker["available"], docker.get("reason")
    assert docker["engine"] == "podman"
    assert docker["endpoint"] == podman_client_url
    assert docker["version"]
