"""The per-app flock that orders launches against removers of the app's cgroup; nothing else."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from sandbox.host import names
from sandbox.host.runtime_dirs import runtime_root


class AppLock:
    """flock on <runtime root>/locks/<app-id>.lock, guarding one app's cgroup parent (or slice).

    Removing it (teardown, gc) takes the lock exclusively. A launch holds it shared from creating
    and limiting the parent until the engine has started the container: until then the parent
    is empty and a remover would delete it, and the engine would re-create it without limits.
    Creating under a shared lock is safe: it is idempotent and launchers of one app write the
    same plan's limits; flock cannot turn an exclusive lock into a shared one without a gap.
    """

    def __init__(self, uid: int, app_id: str) -> None:
        self._path = runtime_root(uid) / "locks" / f"{names.check_app_id(app_id)}.lock"
        self._fd: int | None = None

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        """Take the lock; with wait=False, False (and nothing held) while another holds it."""
        if self._fd is None:
            os.makedirs(self._path.parent, mode=0o700, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self._fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Drop the lock; idempotent. Closing the fd releases it (the kernel does so on death)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def app_lock(uid: int, app_id: str, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold the app's lock for the block; yields False (not held) when wait=False and busy."""
    lock = AppLock(uid, app_id)
    try:
        yield lock.acquire(shared=shared, wait=wait)
    finally:
        lock.release()
