"""storage.<name> provider: per-app persistent dirs under $XDG_DATA_HOME; never deleted by it."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import ProviderError
from sandbox.host import names
from sandbox.policy.plan import Mount, MountKind, StorageRequest
from sandbox.providers.grant import Grant, ProviderContext

# $XDG_DATA_HOME/sandbox/apps/<app-id>/<name>: keyed by the identity the app runs as (never by
# version or instance), so saves survive reinstalls and updates; each app is given only its own
# dirs. That identity is the installed app's id, or for an image no install vouches for the
# throwaway id host/names.unverified_app_id derives from its image id (distribution/resolve.py
# decides which): a label alone never reaches an installed app's dirs.
APPS_DIR = Path("sandbox") / "apps"


def app_data_dir(data_home: Path, app_id: str) -> Path:
    return data_home / APPS_DIR / names.check_app_id(app_id)


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ProviderError(f"storage.{name}: not a plain directory name")
    return name


def _open_user_dir(path: Path, uid: int, gid: int) -> int:
    """An O_DIRECTORY fd of `path`, each missing component made (0700, as XDG asks) one mkdir
    at a time under the fd of its parent, never by path, so no link is followed while creating.

    A new component goes to uid:gid when its parent is that user's (under sudo no root-owned
    ~/.local appears in the user's home); in anyone else's dir it stays the creator's, which
    gives the user nothing. Existing components are never re-owned. Run for another user
    (root under sudo), a link that root does not own must lead to a dir of that user: a user's
    link never steers root's mkdir into a dir the user could not write. A swap after the check
    can only steer it into a root-owned parent, where what is made stays root's."""
    if not path.is_absolute():
        raise ProviderError(f"storage: {path} is not an absolute path")
    privileged = os.geteuid() != uid
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open("/", flags)
    try:
        for name in path.parts[1:]:
            if name in (".", ".."):
                raise ProviderError(f"storage: {path} has a {name!r} component")
            parent = os.fstat(fd)
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
                if privileged and parent.st_uid == uid:
                    os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
            link = os.stat(name, dir_fd=fd, follow_symlinks=False)
            child = os.open(name, flags if stat.S_ISLNK(link.st_mode) else flags | os.O_NOFOLLOW,
                            dir_fd=fd)  # fmt: skip
            os.close(fd)
            fd = child
            foreign_link = stat.S_ISLNK(link.st_mode) and link.st_uid != 0
            if privileged and foreign_link and os.fstat(fd).st_uid != uid:
                raise ProviderError(
                    f"storage: {path}: {name} is a link into a directory not owned by "
                    f"uid {uid}; refusing to create the user's data dir there"
                )
    except OSError as exc:
        os.close(fd)
        raise ProviderError(f"storage: cannot create {path}: {exc.strerror or exc}") from exc
    except ProviderError:
        os.close(fd)
        raise
    return fd


def _private_dir(parent_fd: int, name: str, uid: int, gid: int, where: Path) -> int:
    """mkdir 0700 owned by uid:gid under parent_fd; an existing dir is re-owned and re-moded
    (through its fd, never by path), a link refused. Returns the dir's fd."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ProviderError(f"storage: cannot create {where}: {exc.strerror or exc}") from exc
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
        )
    except OSError as exc:
        raise ProviderError(f"storage: {where} exists and is not a directory") from exc
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    except OSError as exc:
        os.close(fd)
        raise ProviderError(f"storage: cannot secure {where}: {exc.strerror or exc}") from exc
    return fd


class StorageProvider:
    """One storage.<name> grant: the dir is created (kept across runs) and mounted read-write."""

    def __init__(self, request: StorageRequest) -> None:
        self.request = request
        self.name = f"storage.{request.name}"

    def setup(self, ctx: ProviderContext) -> Grant:
        if self.request.app_id != ctx.app_id:
            raise ProviderError(
                f"{self.name}: requested for {self.request.app_id}, not {ctx.app_id}"
            )
        app_dir = app_data_dir(ctx.data_home, ctx.app_id)
        path = app_dir / _check_name(self.request.name)
        root_fd = _open_user_dir(ctx.data_home / APPS_DIR, ctx.uid, ctx.gid)
        try:
            app_fd = _private_dir(root_fd, app_dir.name, ctx.uid, ctx.gid, app_dir)
            try:
                os.close(_private_dir(app_fd, path.name, ctx.uid, ctx.gid, path))
            finally:
                os.close(app_fd)
        finally:
            os.close(root_fd)
        return Grant(
            mounts=(
                Mount(
                    target=self.request.target,
                    kind=MountKind.BIND,
                    source=str(path),
                    read_only=False,
                ),
            )
        )

    def teardown(self) -> None:
        """Nothing to undo: save data outlives every instance."""


@dataclass(frozen=True)
class StorageDir:
    name: str
    path: Path
    size_bytes: int


def _du(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for entry in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, entry)).st_blocks * 512
            except OSError:
                continue
    return total


def list_storage(data_home: Path, app_id: str) -> tuple[StorageDir, ...]:
    """The app's storage dirs with their disk usage, sorted by name."""
    app_dir = app_data_dir(data_home, app_id)
    try:
        entries = sorted(os.scandir(app_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ProviderError(f"storage: cannot list {app_dir}: {exc.strerror or exc}") from exc
    return tuple(
        StorageDir(e.name, Path(e.path), _du(Path(e.path)))
        for e in entries
        if e.is_dir(follow_symlinks=False)
    )


def purge_storage(data_home: Path, app_id: str) -> tuple[StorageDir, ...]:
    """Delete every storage dir of the app (the caller has asked the user); returns what went."""
    gone = list_storage(data_home, app_id)
    app_dir = app_data_dir(data_home, app_id)
    try:
        shutil.rmtree(app_dir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ProviderError(f"storage: cannot remove {app_dir}: {exc.strerror or exc}") from exc
    return gone
