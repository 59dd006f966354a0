"""Unit tests of the app-cgroup object: the driver picks the kind; removal obeys the app lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.policy.facts import CgroupFacts
from sandbox.policy.plan import CgroupDriverName, Limits
from sandbox.runtime import app_cgroup
from sandbox.runtime.app_lock import AppLock

APP = "org.sandboxtest.Parent"


class Recording(app_cgroup.AppCgroup):
    """Records what it was asked; removes whenever asked."""

    removed = 0

    @property
    def name(self) -> str:
        return f"rec-{self.app_id}"

    def create(self, limits: Limits, facts: CgroupFacts | None = None) -> None:
        raise AssertionError("not used here")

    def remove_unused_locked(self) -> bool:
        self.removed += 1
        return True

    @classmethod
    def present(cls, uid: int) -> tuple[app_cgroup.AppCgroup, ...]:
        return (cls(uid, APP),)


@pytest.fixture(autouse=True)
def _runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))


def test_the_plan_driver_picks_the_kind() -> None:
    cgroupfs = app_cgroup.for_driver(CgroupDriverName.CGROUPFS, 0, APP)
    slice_ = app_cgroup.for_driver(CgroupDriverName.SYSTEMD, 0, APP)
    assert isinstance(cgroupfs, app_cgroup.CgroupfsAppCgroup) and cgroupfs.name == APP
    assert isinstance(slice_, app_cgroup.SystemdAppCgroup)
    assert slice_.name == "sandbox-org.sandboxtest.Parent.slice"


def test_gc_leaves_an_app_alone_while_a_launch_holds_its_lock() -> None:
    cgroup = Recording(0, APP)
    launch = AppLock(0, APP)
    assert launch.acquire(shared=True)
    try:
        assert not cgroup.remove_if_unused(wait=False)
        assert cgroup.removed == 0
    finally:
        launch.release()
    assert cgroup.remove_if_unused(wait=False)
    assert cgroup.removed == 1


def test_a_remover_holds_the_lock_exclusively_while_it_removes() -> None:
    seen: list[bool] = []

    class Probing(Recording):
        def remove_unused_locked(self) -> bool:
            other = AppLock(self.uid, self.app_id)
            seen.append(other.acquire(shared=True, wait=False))
            other.release()
            return True

    assert Probing(0, APP).remove_if_unused()
    assert seen == [False]  # no launch could start creating the parent meanwhile
