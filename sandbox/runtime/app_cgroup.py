"""One app's parent cgroup as one object (cgroupfs dirs or a systemd slice); no engine, no policy.

Session, gc and the detached supervisor all create and remove an app's parent through it, so
the app lock is taken the same way everywhere: shared by a launch (runtime/session.py) until
its container runs, exclusively here by whoever removes it.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import time

from sandbox.host.names import app_slice_name
from sandbox.policy.facts import CgroupFacts
from sandbox.policy.plan import CgroupDriverName, Limits
from sandbox.runtime import cgroups, systemd
from sandbox.runtime.app_lock import app_lock

PODMAN_MONITOR_CGROUP = "conmon"  # podman (cgroupfs) puts conmon in <parent>/conmon, never removed
MONITOR_WAIT_TRIES = 40  # conmon outlives its container by a few ms: up to 1 s, 25 ms apart
SYSTEMD_RUN_DIR = "/run/systemd/system"  # exists only where systemd is the init (sd_booted)


class AppCgroup(abc.ABC):
    """The parent every instance of one app runs under; app-wide limits live on it."""

    def __init__(self, uid: int, app_id: str) -> None:
        self.uid = uid  # whose app lock guards it
        self.app_id = app_id

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """How gc reports it."""

    @abc.abstractmethod
    def create(self, limits: Limits, facts: CgroupFacts | None = None) -> None:
        """Create it (idempotent) with the app-wide limits; the launch holds the lock shared."""

    @abc.abstractmethod
    def remove_unused_locked(self) -> bool:
        """Remove it unless an instance still uses it; the caller holds the lock exclusively."""

    @classmethod
    @abc.abstractmethod
    def present(cls, uid: int) -> tuple[AppCgroup, ...]:
        """Every app's parent of this kind on this host, for gc."""

    def remove_if_unused(self, *, wait: bool = True) -> bool:
        """Remove it once no instance uses it; True when it is gone.

        wait=False (gc): an app whose lock is held is left alone (False): a launch in progress
        needs its parent, and the holder removes it itself when its own instance ends."""
        with app_lock(self.uid, self.app_id, wait=wait) as held:
            return held and self.remove_unused_locked()


class CgroupfsAppCgroup(AppCgroup):
    """/sandbox/<app-id> in every hierarchy (runtime/cgroups.py)."""

    @property
    def name(self) -> str:
        return self.app_id

    def create(self, limits: Limits, facts: CgroupFacts | None = None) -> None:
        cgroups.create_app_cgroup(self.app_id, limits, facts)

    def remove_unused_locked(self) -> bool:
        dirs = cgroups.app_dirs(self.app_id, cgroups.host_hierarchies())
        _wait_for_monitors(dirs)
        return cgroups.remove_app_cgroup(self.app_id)

    @classmethod
    def present(cls, uid: int) -> tuple[AppCgroup, ...]:
        return tuple(cls(uid, app_id) for app_id in cgroups.list_app_cgroups())


def _wait_for_monitors(dirs: tuple[str, ...]) -> None:
    """Remove the engine monitors' cgroups once they are empty; never waits for app processes."""
    for _ in range(MONITOR_WAIT_TRIES):
        monitors = [os.path.join(d, PODMAN_MONITOR_CGROUP) for d in dirs]
        for m in monitors:
            # rmdir refuses (EBUSY) while conmon still runs in it: only an empty one goes
            with contextlib.suppress(OSError):
                os.rmdir(m)
        if not any(os.path.isdir(m) for m in monitors):
            return
        time.sleep(0.025)


class SystemdAppCgroup(AppCgroup):
    """sandbox-<escaped app id>.slice, limited through unit properties (runtime/systemd.py)."""

    @property
    def name(self) -> str:
        return app_slice_name(self.app_id)

    def create(self, limits: Limits, facts: CgroupFacts | None = None) -> None:
        systemd.apply_slice_limits(self.app_id, limits)

    def remove_unused_locked(self) -> bool:
        mounts = tuple(m.path for m in cgroups.host_hierarchies())
        if systemd.slice_in_use(self.app_id, mounts):
            return False
        systemd.remove_slice(self.app_id)
        return True

    @classmethod
    def present(cls, uid: int) -> tuple[AppCgroup, ...]:
        # only where systemd is the init (sd_booted): elsewhere there is no slice to list
        if not (shutil.which(systemd.SYSTEMCTL) and os.path.isdir(SYSTEMD_RUN_DIR)):
            return ()
        return tuple(cls(uid, app_id) for app_id in systemd.list_app_slices())


# gc sweeps both: a host may have switched drivers since an app last ran.
KINDS: tuple[type[AppCgroup], ...] = (CgroupfsAppCgroup, SystemdAppCgroup)


def for_driver(driver: CgroupDriverName, uid: int, app_id: str) -> AppCgroup:
    """The app's parent as the plan's cgroup driver places it."""
    if driver is CgroupDriverName.CGROUPFS:
        return CgroupfsAppCgroup(uid, app_id)
    return SystemdAppCgroup(uid, app_id)
