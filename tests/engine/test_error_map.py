"""The one error map: a missing or silent engine is unavailable; its answers are LaunchErrors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sandbox.engine.adapter import DockerAdapter
from sandbox.engine.error_map import connection_failed, engine_error, no_endpoint, unreachable
from sandbox.errors import EngineUnavailableError, LaunchError, UnavailableError


def test_engine_error_quotes_the_engines_message() -> None:
    error = engine_error("start abc", 500, b'{"message":" no space left "}')
    assert str(error) == "start abc: the engine answered 500: no space left"
    assert not isinstance(error, UnavailableError)
    plain = engine_error("start abc", 502, b"Bad Gateway\n")
    assert str(plain) == "start abc: the engine answered 502: Bad Gateway"


def test_unavailable_and_broken_off_are_told_apart() -> None:
    gone = unreachable("/run/docker.sock", "[Errno 2] No such file or directory")
    assert isinstance(gone, EngineUnavailableError) and isinstance(gone, LaunchError)
    assert str(gone) == (
        "cannot reach the container engine at /run/docker.sock: [Errno 2] No such file or directory"
    )
    assert str(unreachable("unix:///x", "refused", "list images")).startswith(
        "list images: cannot reach the container engine at unix:///x"
    )
    assert isinstance(no_endpoint("nothing configured"), EngineUnavailableError)
    broken = connection_failed("wait abc", ConnectionResetError(104, "reset"))
    assert type(broken) is LaunchError
    assert str(broken) == "wait abc: engine connection failed: [Errno 104] reset"


def test_a_refused_endpoint_scheme_is_unavailable() -> None:
    with pytest.raises(EngineUnavailableError, match=r"^cannot connect to the container engine: "):
        DockerAdapter.from_env("ssh://host")


def test_no_socket_is_unavailable_on_the_raw_client(sock_dir: Path) -> None:
    with pytest.raises(
        EngineUnavailableError, match=rf"^cannot reach the container engine at {sock_dir}/none"
    ):
        DockerAdapter.from_env(f"unix://{sock_dir}/none.sock").inspect("c" * 64)


def test_no_listener_is_unavailable_on_the_image_client(sock_dir: Path) -> None:
    dead = sock_dir / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()
    with (
        DockerAdapter.from_env(f"unix://{dead}") as adapter,
        pytest.raises(EngineUnavailableError, match=r"^list images: cannot reach"),
    ):
        adapter.images.ids()
