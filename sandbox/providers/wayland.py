"""display.wayland provider: a per-instance dir with the compositor socket for a uid; no policy."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sandbox.errors import ComponentUnavailableError, ProviderError
from sandbox.policy.plan import Mount, MountKind, WaylandSocketRequest
from sandbox.providers import posix_acl
from sandbox.providers import state as provider_state
from sandbox.providers.grant import Grant, ProviderContext, env_vars

STATE_FILE = "wayland.json"
# Under the host runtime dir, because a hard link must stay on the socket's filesystem.
GRANTS_DIR = ".sandbox-wayland"
_LOCK_FILE = ".lock"
_SOCKET_PERM = posix_acl.READ | posix_acl.WRITE  # connect(2) needs write permission


@dataclass(frozen=True)
class WaylandGrant:
    """Mount dir_path (read-only) at container_runtime_dir and set the env."""

    dir_path: Path
    container_runtime_dir: PurePosixPath  # /run/user/<uid>
    display: str  # socket name inside the dir, e.g. "wayland-0"
    socket_path: Path  # dir_path / display: a hard link to the compositor's socket inode
    acl_uid: int | None  # the uid given a named ACL entry on that inode, if it needed one
    read_only: bool = True

    @property
    def env(self) -> tuple[tuple[str, str], ...]:
        return (
            ("XDG_RUNTIME_DIR", str(self.container_runtime_dir)),
            ("WAYLAND_DISPLAY", self.display),
        )


@contextlib.contextmanager
def _locked(grants_dir: Path) -> Iterator[None]:
    """Serialises ACL edits between launchers: one must not drop an entry another relies on."""
    fd = os.open(grants_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_acl(path: Path) -> tuple[posix_acl.AclEntry, ...]:
    try:
        return posix_acl.decode(os.getxattr(path, posix_acl.XATTR_NAME))
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return posix_acl.from_mode(path.stat().st_mode)
        raise ProviderError(f"display.wayland: cannot read the ACL of {path}: {exc}") from exc


def _write_acl(path: Path, entries: tuple[posix_acl.AclEntry, ...]) -> None:
    # A minimal ACL is folded back into the mode bits by the kernel (posix_acl_update_mode),
    # so revoking the last named entry leaves no xattr behind.
    try:
        os.setxattr(path, posix_acl.XATTR_NAME, posix_acl.encode(entries))
    except OSError as exc:
        raise ProviderError(f"display.wayland: cannot set the ACL of {path}: {exc}") from exc


def _other_links_for(grants_dir: Path, own: Path, inode: tuple[int, int], uid: int) -> bool:
    """Whether another live grant dir of `uid` links the same socket inode."""
    for entry in grants_dir.iterdir():
        if entry == own or not entry.is_dir() or entry.is_symlink():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid != uid:
                continue
            for link in entry.iterdir():
                st = link.lstat()
                if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == inode:
                    return True
    return False


def _socket_stat(host_socket: Path) -> os.stat_result:
    """The compositor socket's stat; a path that is no socket name in a dir is refused."""
    if not host_socket.name or ".." in host_socket.parts:
        raise ProviderError(f"display.wayland: {str(host_socket)!r} is not a socket name")
    try:
        st = host_socket.lstat()
    except OSError as exc:
        raise ComponentUnavailableError(
            f"display.wayland: no compositor socket at {host_socket}"
        ) from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise ProviderError(f"display.wayland: {host_socket} is not a socket")
    return st


def _link_for(host_socket: Path, grant_dir: Path, uid: int, gid: int, acl_uid: int | None) -> None:
    """The uid's 0700 dir with a hard link to the socket (and the ACL entry the uid needs)."""
    try:
        grant_dir.mkdir(mode=0o700)
        os.chown(grant_dir, uid, gid)
        link = grant_dir / host_socket.name
        # A hard link, not a copy of the mode: the dir (0700, the uid's) is the gate;
        # the inode keeps its mode, and only a named ACL entry for this uid is added.
        os.link(host_socket, link)
        if acl_uid is not None:
            _write_acl(link, posix_acl.grant_user(_read_acl(link), acl_uid, _SOCKET_PERM))
    except OSError as exc:
        raise ProviderError(
            f"display.wayland: cannot set up {grant_dir} for uid {uid}: {exc}"
        ) from exc


class WaylandProvider:
    """display.wayland for one instance: a per-instance dir holding the request's compositor
    socket, mounted as XDG_RUNTIME_DIR; teardown() removes it and the ACL entry it added."""

    name = "display.wayland"

    def __init__(self, request: WaylandSocketRequest) -> None:
        self.request = request
        self._grant: WaylandGrant | None = None
        self._instance_dir: Path | None = None

    @property
    def grant(self) -> WaylandGrant | None:
        return self._grant

    def setup(self, ctx: ProviderContext) -> Grant:
        g = self._make(ctx)
        mount = Mount(
            target=str(g.container_runtime_dir),
            kind=MountKind.BIND,
            source=str(g.dir_path),
            read_only=g.read_only,
        )
        return Grant(mounts=(mount,), env=env_vars(g.env))

    def _make(self, ctx: ProviderContext) -> WaylandGrant:
        if self._grant is not None:
            raise ProviderError("display.wayland: this provider already holds a grant")
        host_socket = Path(self.request.socket_path)
        st = _socket_stat(host_socket)
        grants_dir = host_socket.parent / GRANTS_DIR
        grants_dir.mkdir(mode=0o700, exist_ok=True)
        ctx.instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        grant_dir = grants_dir / ctx.instance_dir.name
        acl_uid = ctx.uid if ctx.uid != st.st_uid else None
        with _locked(grants_dir):
            if grant_dir.exists():
                _remove_dir(grants_dir, grant_dir, acl_uid)
            # Recorded before anything is made, so gc can undo a half-done setup.
            _write_state(ctx.instance_dir, grant_dir, acl_uid)
            self._instance_dir = ctx.instance_dir
            try:
                _link_for(host_socket, grant_dir, ctx.uid, ctx.gid, acl_uid)
            except ProviderError:
                _remove_dir(grants_dir, grant_dir, acl_uid)
                (ctx.instance_dir / STATE_FILE).unlink(missing_ok=True)
                self._instance_dir = None
                raise
        self._grant = WaylandGrant(
            dir_path=grant_dir,
            container_runtime_dir=PurePosixPath(f"/run/user/{ctx.uid}"),
            display=host_socket.name,
            socket_path=grant_dir / host_socket.name,
            acl_uid=acl_uid,
        )
        return self._grant

    def teardown(self) -> None:
        """Remove the dir and this instance's ACL entry; idempotent."""
        instance_dir, self._instance_dir = self._instance_dir, None
        self._grant = None
        if instance_dir is not None:
            collect(instance_dir)


def _remove_dir(grants_dir: Path, grant_dir: Path, acl_uid: int | None) -> None:
    """Caller holds the lock. The ACL is edited through our own link (the same inode), so a
    restarted compositor's new socket is never touched."""
    if not grant_dir.is_dir() or grant_dir.is_symlink():
        return
    if acl_uid is not None:
        for link in grant_dir.iterdir():
            with contextlib.suppress(OSError):
                st = link.lstat()
                if not stat.S_ISSOCK(st.st_mode) or st.st_nlink < 2:
                    continue  # the compositor's name is gone: the inode dies with our link
                inode = (st.st_dev, st.st_ino)
                if not _other_links_for(grants_dir, grant_dir, inode, acl_uid):
                    _write_acl(link, posix_acl.revoke_user(_read_acl(link), acl_uid))
    shutil.rmtree(grant_dir, ignore_errors=True)


def _write_state(instance_dir: Path, grant_dir: Path, acl_uid: int | None) -> None:
    provider_state.write_state(
        instance_dir / STATE_FILE, {"dir": str(grant_dir), "acl_uid": acl_uid}
    )


def _parse_state(raw: Any) -> tuple[Path, int | None]:
    return Path(str(raw["dir"])), None if raw["acl_uid"] is None else int(raw["acl_uid"])


def collect(instance_dir: Path) -> None:
    """gc (and teardown) for one instance dir: remove its Wayland dir and ACL entry."""
    path = instance_dir / STATE_FILE
    state = provider_state.read_state(path, "Wayland", _parse_state)
    if state is None:
        return
    grant_dir, acl_uid = state
    if grant_dir.parent.name != GRANTS_DIR:
        raise ProviderError(f"{path}: {grant_dir} is not a Wayland grant dir")
    if grant_dir.parent.is_dir():
        with _locked(grant_dir.parent):
            _remove_dir(grant_dir.parent, grant_dir, acl_uid)
    path.unlink(missing_ok=True)
