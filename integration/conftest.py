"""Fixtures handing integration tests the real components the harness started; start nothing."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from integration.components import (
    X11_SOCKET_DIR,
    PulseServer,
    WaylandDisplay,
    X11Display,
    engine_answers,
    engine_get,
    missing,
    require_binary,
    unix_socket_accepts,
    x11_answers,
)

INTEGRATION_DIR = Path(__file__).resolve().parent
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_TOOLS_IMAGE = "sandbox-test/tools:latest"
DEFAULT_BASE_IMAGE = "sandbox-test/base:bookworm"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The hook sees the whole session: mark only the items that live under integration/.
    del config
    for item in items:
        if INTEGRATION_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def real_desktop() -> bool:
    """True when running against the user's own desktop: leave their windows and streams alone."""
    return os.environ.get("SANDBOX_REAL_DESKTOP") == "1"


def _engine_url(var: str, default: str | None, what: str) -> str:
    url = os.environ.get(var, default)
    if not url:
        missing(f"{what}: ${var} is not set")
    why = engine_answers(url)
    if why is not None:
        missing(f"{what} at {url} does not answer /_ping: {why}")
    return url


@pytest.fixture(scope="session")
def docker_client_url() -> str:
    """The Docker engine's base url (DOCKER_HOST, default the system socket), answering /_ping."""
    return _engine_url("DOCKER_HOST", DEFAULT_DOCKER_HOST, "Docker engine")


@pytest.fixture(scope="session")
def docker_client(docker_client_url: str) -> Iterator[docker.DockerClient]:
    """A docker-py client of that engine, shared by the session."""
    client = docker.DockerClient(base_url=docker_client_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def podman_client_url() -> str:
    """The Podman Docker-compatible API service (SANDBOX_TEST_PODMAN_HOST), answering /_ping."""
    return _engine_url("SANDBOX_TEST_PODMAN_HOST", None, "Podman API service")


@pytest.fixture(scope="session")
def x11_display() -> X11Display:
    display = os.environ.get("DISPLAY")
    if not display:
        missing("X11: $DISPLAY is not set")
    xauthority = os.environ.get("XAUTHORITY")
    why = x11_answers(display, xauthority)
    if why is not None:
        missing(f"X11: cannot open display {display}: {why}")
    number = display.rsplit(":", 1)[-1].split(".", 1)[0]
    return X11Display(display, xauthority, str(X11_SOCKET_DIR / f"X{number}"))


@pytest.fixture(scope="session")
def wayland_display() -> WaylandDisplay:
    display = os.environ.get("WAYLAND_DISPLAY")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not display or not runtime_dir:
        missing("Wayland: $WAYLAND_DISPLAY and $XDG_RUNTIME_DIR must both be set")
    socket_path = os.path.join(runtime_dir, display)  # an absolute WAYLAND_DISPLAY wins
    why = unix_socket_accepts(socket_path)
    if why is not None:
        missing(f"Wayland: compositor socket does not accept: {why}")
    return WaylandDisplay(display, runtime_dir, socket_path)


@pytest.fixture(scope="session")
def pulse_server() -> PulseServer:
    """PULSE_SERVER, or on a real desktop the default $XDG_RUNTIME_DIR/pulse/native."""
    server = os.environ.get("PULSE_SERVER")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not server and runtime_dir:
        server = f"unix:{os.path.join(runtime_dir, 'pulse', 'native')}"
    if not server:
        missing("PulseAudio: neither $PULSE_SERVER nor $XDG_RUNTIME_DIR is set")
    if not server.startswith("unix:"):
        missing(f"PulseAudio: only unix: servers are supported here, got {server!r}")
    socket_path = server.removeprefix("unix:")
    why = unix_socket_accepts(socket_path)
    if why is not None:
        missing(f"PulseAudio: server socket does not accept: {why}")
    return PulseServer(server, socket_path)


def _image(url: str, name: str) -> str:
    quoted = urllib.parse.quote(name, safe="")
    try:
        status, body = engine_get(url, f"/images/{quoted}/json")
    except OSError as exc:
        missing(f"image {name}: engine at {url} failed: {exc}")
    if status != 200:
        missing(f"image {name} is not in the engine at {url} (build it: integration/images.sh)")
    json.loads(body)  # a truncated answer is a broken engine, not a missing image
    return name


@pytest.fixture(scope="session")
def tools_image(docker_client_url: str) -> str:
    """Host X11/pulse/wayland client binaries in a tiny image (sh, xdpyinfo, paplay, ...)."""
    return _image(
        docker_client_url, os.environ.get("SANDBOX_TEST_TOOLS_IMAGE", DEFAULT_TOOLS_IMAGE)
    )


@pytest.fixture(scope="session")
def base_image(docker_client_url: str) -> str:
    """The Debian runtime base apps build FROM: python3, python3-xlib, X11/pulse/wayland clients."""
    name = os.environ.get("SANDBOX_TEST_BASE_IMAGE", DEFAULT_BASE_IMAGE)
    return _image(docker_client_url, name)


@pytest.fixture(scope="session")
def umockdev_run() -> str:
    """Path of umockdev-run, which fakes udev devices for the process tree it starts."""
    return require_binary("umockdev-run")
