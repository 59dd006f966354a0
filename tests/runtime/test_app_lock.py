"""Unit tests of the app lock: shared launch holds, exclusive removers, gc's non-blocking try."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.runtime.app_lock import AppLock, app_lock

APP = "org.sandboxtest.Lock"


@pytest.fixture(autouse=True)
def _runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))


def test_shared_holders_coexist_and_exclude_removers() -> None:
    first, second = AppLock(0, APP), AppLock(0, APP)
    assert first.acquire(shared=True)
    assert second.acquire(shared=True, wait=False)
    with app_lock(0, APP, wait=False) as held:
        assert not held  # a remover (gc) skips an app while a launch holds it
    first.release()
    with app_lock(0, APP, wait=False) as held:
        assert not held
    second.release()
    with app_lock(0, APP, wait=False) as held:
        assert held


def test_exclusive_holder_keeps_launchers_and_other_removers_out() -> None:
    with app_lock(0, APP) as held:
        assert held
        launcher = AppLock(0, APP)
        assert not launcher.acquire(shared=True, wait=False)
        launcher.release()
        with app_lock(0, APP, wait=False) as other:
            assert not other


def test_release_is_idempotent_and_the_lock_is_reusable() -> None:
    lock = AppLock(0, APP)
    lock.release()  # never acquired: nothing to do
    assert lock.acquire()
    lock.release()
    lock.release()
    assert lock.acquire(shared=True)
    lock.release()


def test_lock_file_is_private(tmp_path: Path) -> None:
    with app_lock(0, APP):
        pass
    path = tmp_path / "sandbox" / "locks" / f"{APP}.lock"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
