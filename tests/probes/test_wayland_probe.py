"""Wayland probe: socket resolution as libwayland does it, and connecting to a local socket."""

from __future__ import annotations

import socket
from pathlib import Path

from sandbox.host.bounded_io import Missing
from sandbox.probes import wayland


def test_relative_name_lives_in_the_runtime_dir() -> None:
    where = wayland.resolve_socket({"WAYLAND_DISPLAY": "wayland-1", "XDG_RUNTIME_DIR": "/run/u"})
    assert isinstance(where, wayland.WaylandSocket)
    assert (where.display, where.path) == ("wayland-1", "/run/u/wayland-1")


def test_absolute_path_needs_no_runtime_dir() -> None:
    where = wayland.resolve_socket({"WAYLAND_DISPLAY": "/tmp/w/sock"})
    assert isinstance(where, wayland.WaylandSocket) and where.path == "/tmp/w/sock"


def test_default_name_and_missing_runtime_dir() -> None:
    where = wayland.resolve_socket({"XDG_RUNTIME_DIR": "/run/u"})
    assert isinstance(where, wayland.WaylandSocket) and where.path == "/run/u/wayland-0"
    missing = wayland.resolve_socket({"WAYLAND_DISPLAY": "wayland-1"})
    assert isinstance(missing, Missing) and "XDG_RUNTIME_DIR" in missing.reason


def test_probe_connects_to_a_listening_socket(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "wayland-9"))
    server.listen(1)
    try:
        env = {"WAYLAND_DISPLAY": "wayland-9", "XDG_RUNTIME_DIR": str(tmp_path)}
        facts = wayland.probe(env, 1.0)
    finally:
        server.close()
    assert facts.available, facts.reason
    assert facts.socket_path == str(tmp_path / "wayland-9")


def test_probe_of_a_stale_socket_file_is_unavailable(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "wayland-9"))
    stale.close()  # the file stays, as after a compositor crash
    facts = wayland.probe({"WAYLAND_DISPLAY": "wayland-9", "XDG_RUNTIME_DIR": str(tmp_path)}, 1.0)
    assert not facts.available and facts.reason is not None and "refused" in facts.reason


def test_probe_of_a_plain_file_says_it_is_not_a_socket(tmp_path: Path) -> None:
    (tmp_path / "wayland-0").write_text("")
    facts = wayland.probe({"XDG_RUNTIME_DIR": str(tmp_path)}, 1.0)
    assert not facts.available and facts.reason is not None
    assert "WAYLAND_DISPLAY is not set" in facts.reason
