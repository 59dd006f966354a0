"""storage.<name> provider: per-app persistent dirs under $XDG_DATA_HOME; never deleted by it."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import ProviderError
from sandbox.policy import names
from sandbox.policy.plan import Mount, MountKind, StorageRequest
from sandbox.providers.grant import Grant, ProviderContext

# $XDG_DATA_HOME/sandbox/apps/<app-id>/<name>: keyed by app id only (never by image, version or
# instance), so saves survive reinstalls and updates; each app is given only its own dirs.
APPS_DIR = Path("sandbox") / "apps"


def app_data_dir(data_home: Path, app_id: str) -> Path:
    return data_home / APPS_DIR / names.check_app_id(app_id)


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ProviderError(f"storage.{name}: not a plain directory name")
    return name


def _private_dir(path: Path, uid: int, gid: int) -> None:
    """mkdir 0700 owned by uid:gid; an existing dir is re-owned and re-moded, a link refused."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ProviderError(f"storage: cannot create {path}: {exc.strerror or exc}") from exc
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise ProviderError(f"storage: {path} exists and is not a directory")
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid, follow_symlinks=False)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise ProviderError(f"storage: cannot secure {path}: {exc.strerror or exc}") from exc


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
        root = ctx.data_home / APPS_DIR
        os.makedirs(root, mode=0o755, exist_ok=True)
        app_dir = app_data_dir(ctx.data_home, ctx.app_id)
        _private_dir(app_dir, ctx.uid, ctx.gid)
        path = app_dir / _check_name(self.request.name)
        _private_dir(path, ctx.uid, ctx.gid)
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
