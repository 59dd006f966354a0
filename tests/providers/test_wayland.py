"""Wayland dir provider on a real filesystem with a stand-in compositor socket."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.errors import ProviderError
from sandbox.policy.plan import MountKind, WaylandSocketRequest
from sandbox.providers import posix_acl, wayland
from sandbox.providers.grant import Grant, ProviderContext
from sandbox.providers.wayland import WaylandGrant, WaylandProvider

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


@pytest.fixture
def compositor(tmp_path: Path) -> Iterator[Path]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = runtime / "wayland-3"
    sock.bind(str(path))
    os.chmod(path, 0o755)
    sock.listen()
    yield path
    sock.close()


def _provider(socket_path: Path) -> WaylandProvider:
    return WaylandProvider(WaylandSocketRequest(socket_path.name, str(socket_path)))


def _ctx(instance: Path, uid: int, gid: int) -> ProviderContext:
    return ProviderContext("com.example.Game", instance, uid, gid, "game", instance)


def _setup(provider: WaylandProvider, instance: Path, uid: int, gid: int) -> WaylandGrant:
    provider.setup(_ctx(instance, uid, gid))
    assert provider.grant is not None
    return provider.grant


def _acl_xattr(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, posix_acl.XATTR_NAME)
    except OSError:
        return None


@needs_root
def test_grant_dir_links_the_socket_for_one_uid(compositor: Path, tmp_path: Path) -> None:
    before = compositor.stat()
    provider = _provider(compositor)
    grant = _setup(provider, tmp_path / "inst", 1000, 1000)
    d = grant.dir_path.stat()
    assert (d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode)) == (1000, 1000, 0o700)
    link = grant.socket_path.stat()
    assert (link.st_dev, link.st_ino) == (before.st_dev, before.st_ino)
    entries = posix_acl.decode(os.getxattr(compositor, posix_acl.XATTR_NAME))
    assert posix_acl.user_perm(entries, 1000) == posix_acl.READ | posix_acl.WRITE
    # Others' and owner's bits are untouched; group bits now show the mask.
    after = compositor.stat()
    assert stat.S_IMODE(after.st_mode) & 0o707 == stat.S_IMODE(before.st_mode) & 0o707
    assert dict(grant.env) == {"XDG_RUNTIME_DIR": "/run/user/1000", "WAYLAND_DISPLAY": "wayland-3"}

    provider.teardown()
    provider.teardown()
    assert not grant.dir_path.exists()
    assert _acl_xattr(compositor) is None
    assert compositor.stat().st_mode == before.st_mode
    assert not (tmp_path / "inst" / wayland.STATE_FILE).exists()


@needs_root
def test_acl_stays_while_another_instance_of_the_uid_needs_it(
    compositor: Path, tmp_path: Path
) -> None:
    a, b = _provider(compositor), _provider(compositor)
    _setup(a, tmp_path / "a", 1000, 1000)
    _setup(b, tmp_path / "b", 1000, 1000)
    a.teardown()
    entries = posix_acl.decode(os.getxattr(compositor, posix_acl.XATTR_NAME))
    assert posix_acl.user_perm(entries, 1000) is not None
    b.teardown()
    assert _acl_xattr(compositor) is None


def test_same_uid_as_owner_needs_no_acl(compositor: Path, tmp_path: Path) -> None:
    provider = _provider(compositor)
    given = provider.setup(_ctx(tmp_path / "inst", os.geteuid(), os.getegid()))
    grant = provider.grant
    assert grant is not None
    assert grant.acl_uid is None
    # The grant the runtime mounts: the dir, read-only, as the app's XDG_RUNTIME_DIR.
    (mount,) = given.mounts
    assert (mount.kind, mount.source, mount.read_only) == (
        MountKind.BIND,
        str(grant.dir_path),
        True,
    )
    assert mount.target == f"/run/user/{os.geteuid()}"
    assert given == Grant(mounts=(mount,), env=given.env)
    assert {v.name: v.value for v in given.env} == dict(grant.env)
    assert _acl_xattr(compositor) is None
    provider.teardown()


@needs_root
def test_gc_collects_after_a_crash(compositor: Path, tmp_path: Path) -> None:
    provider = _provider(compositor)
    grant = _setup(provider, tmp_path / "inst", 1000, 1000)
    del provider  # the launcher died without teardown
    wayland.collect(tmp_path / "inst")
    assert not grant.dir_path.exists()
    assert _acl_xattr(compositor) is None


def test_missing_or_non_socket_display_is_refused(compositor: Path, tmp_path: Path) -> None:
    (compositor.parent / "plain").write_text("")
    for name in ("wayland-404", "plain", "../run/wayland-3"):
        with pytest.raises(ProviderError, match=r"display\.wayland"):
            _provider(compositor.parent / name).setup(_ctx(tmp_path / "i", 1000, 1000))
