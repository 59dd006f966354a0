"""display.wayland against real Weston and containers: one uid reaches it, nobody else more."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import Mount

from integration.components import WaylandDisplay, poll, require_binary
from integration.containers import APP_UID, hardened, run_to_end
from sandbox.policy.plan import WaylandSocketRequest
from sandbox.providers import posix_acl
from sandbox.providers.grant import ProviderContext
from sandbox.providers.wayland import WaylandGrant, WaylandProvider

PROBES = Path(__file__).resolve().parent / "probes"


def _provider(socket_path: Path) -> WaylandProvider:
    return WaylandProvider(WaylandSocketRequest(socket_path.name, str(socket_path)))


def _setup(provider: WaylandProvider, instance: Path) -> WaylandGrant:
    provider.setup(ProviderContext("org.sandboxtest.W", instance, APP_UID, APP_UID, "w", instance))
    assert provider.grant is not None
    return provider.grant


def _hardened(grant: WaylandGrant, uid: int = APP_UID) -> dict[str, Any]:
    return hardened(
        uid,
        environment=dict(grant.env),
        mounts=[
            Mount(
                str(grant.container_runtime_dir),
                str(grant.dir_path),
                "bind",
                read_only=grant.read_only,
            ),
            Mount("/probe", str(PROBES), "bind", read_only=True),
        ],
    )


def _acl(path: str) -> bytes | None:
    try:
        return os.getxattr(path, posix_acl.XATTR_NAME)
    except OSError:
        return None


def test_app_uid_reaches_the_compositor_and_no_one_else_gains(
    wayland_display: WaylandDisplay,
    tools_image: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    before = os.stat(wayland_display.socket_path)
    acl_before = _acl(wayland_display.socket_path)
    provider = _provider(Path(wayland_display.runtime_dir) / wayland_display.display)
    grant = _setup(provider, tmp_path / "inst")
    try:
        code, out = run_to_end(docker_client, tools_image, ["wayland-info"], **_hardened(grant))
        assert code == 0, out
        assert "wl_compositor" in out
        # Another uid given the same dir gets nothing; the host socket's owner, group and
        # other rights are what they were.
        code, out = run_to_end(
            docker_client, tools_image, ["wayland-info"], **_hardened(grant, uid=1001)
        )
        assert code != 0, out
        during = os.stat(wayland_display.socket_path)
        assert (during.st_uid, during.st_gid) == (before.st_uid, before.st_gid)
        assert stat.S_IMODE(during.st_mode) & 0o707 == stat.S_IMODE(before.st_mode) & 0o707
        if grant.acl_uid is not None:
            entries = posix_acl.decode(
                os.getxattr(wayland_display.socket_path, posix_acl.XATTR_NAME)
            )
            named = {
                (e.tag, e.id) for e in entries if e.tag in (posix_acl.Tag.USER, posix_acl.Tag.GROUP)
            }
            old = (
                set()
                if acl_before is None
                else {
                    (e.tag, e.id)
                    for e in posix_acl.decode(acl_before)
                    if e.tag in (posix_acl.Tag.USER, posix_acl.Tag.GROUP)
                }
            )
            assert named - old == {(posix_acl.Tag.USER, APP_UID)}
    finally:
        provider.teardown()
    assert not grant.dir_path.exists()
    assert os.stat(wayland_display.socket_path).st_mode == before.st_mode
    assert _acl(wayland_display.socket_path) == acl_before


def _start_weston(runtime: Path, name: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            require_binary("weston"),
            "--backend=headless-backend.so",
            f"--socket={name}",
            "--idle-time=0",
        ],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(runtime / name))
                return proc
            except OSError:
                time.sleep(0.1)
    proc.kill()
    pytest.fail("private weston did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # weston starts helper clients in its session: end the whole group it leads (ours).
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_compositor_restart_ends_the_app_connection(
    base_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """A private Weston: the shared one must not be restarted under other tests."""
    # Not under tmp_path: the grant's socket path below it would pass the 107-byte AF_UNIX limit.
    runtime = Path(tempfile.mkdtemp(prefix="wl-"))
    name = "wayland-restart"
    weston = _start_weston(runtime, name)
    provider = _provider(runtime / name)
    container = None
    try:
        grant = _setup(provider, tmp_path / "inst")
        container = docker_client.containers.run(
            base_image, ["python3", "/probe/wayland_hold.py"], detach=True, **_hardened(grant)
        )
        poll(lambda: b"connected" in container.logs(), 30, 0.1)
        assert b"connected" in container.logs(), container.logs()
        _stop(weston)
        weston = _start_weston(runtime, name)
        status = container.wait(timeout=30)
        assert b"ended" in container.logs() and status["StatusCode"] == 0, container.logs()
        # The old grant points at the dead inode; the host's path reaches the new compositor.
        with socket.socket(socket.AF_UNIX) as s, pytest.raises(ConnectionRefusedError):
            s.connect(str(grant.socket_path))
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(runtime / name))
        assert _acl(str(runtime / name)) is None  # the new socket never got our ACL
    finally:
        if container is not None:
            container.remove(force=True)
        provider.teardown()
        _stop(weston)
        shutil.rmtree(runtime, ignore_errors=True)
