"""Unit tests of the storage provider's dirs: ownership under sudo, links, existing user dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.errors import ProviderError
from sandbox.policy.plan import StorageRequest
from sandbox.providers.grant import ProviderContext
from sandbox.providers.storage import StorageProvider

APP = "org.sandboxtest.Storage"
USER = 4321  # a uid other than ours: the user a root launcher (sudo) works for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def _setup(data_home: Path, uid: int = USER) -> Path:
    ctx = ProviderContext(APP, data_home, uid, uid, "host", data_home)
    grant = StorageProvider(StorageRequest(APP, "saves", "/data/saves")).setup(ctx)
    return Path(grant.mounts[0].source or "")


def _owner(path: Path) -> int:
    return os.lstat(path).st_uid


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o750)
    os.chown(home, USER, USER)
    return home


def test_missing_components_in_the_users_home_are_the_users(home: Path) -> None:
    saves = _setup(home / ".local" / "share")
    assert saves == home / ".local/share/sandbox/apps" / APP / "saves"
    for path in (
        home / ".local",
        home / ".local/share",
        home / ".local/share/sandbox",
        home / ".local/share/sandbox/apps",
        saves.parent,
        saves,
    ):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (USER, USER), path
        assert st.st_mode & 0o777 == 0o700, path
    assert _owner(home) == USER and os.lstat(home).st_mode & 0o777 == 0o750  # untouched


def test_existing_user_dirs_keep_their_owner_and_mode(home: Path) -> None:
    (home / ".local").mkdir(mode=0o755)
    os.chmod(home / ".local", 0o755)
    os.chown(home / ".local", USER, 999)
    _setup(home / ".local" / "share")
    st = os.lstat(home / ".local")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (USER, 999, 0o755)
    assert _owner(home / ".local/share") == USER


def test_a_root_owned_parent_gives_the_user_only_the_app_dirs(tmp_path: Path) -> None:
    saves = _setup(tmp_path / "data")  # tmp_path is root's: what is made there stays root's
    assert _owner(tmp_path / "data") == 0
    assert _owner(tmp_path / "data/sandbox/apps") == 0
    assert _owner(saves.parent) == USER and _owner(saves) == USER


def test_a_user_link_into_a_foreign_dir_is_refused(home: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "etc"
    foreign.mkdir()
    os.symlink(foreign, home / ".local")
    os.chown(home / ".local", USER, USER, follow_symlinks=False)
    with pytest.raises(ProviderError, match="link into a directory not owned by uid 4321"):
        _setup(home / ".local" / "share")
    assert os.listdir(foreign) == []


def test_a_user_link_into_the_users_own_dir_is_followed(home: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    os.chown(disk, USER, USER)
    os.symlink(disk, home / ".local")
    os.chown(home / ".local", USER, USER, follow_symlinks=False)
    saves = _setup(home / ".local" / "share")
    assert (disk / "share/sandbox/apps" / APP / "saves").is_dir()
    assert _owner(disk / "share") == USER and _owner(saves) == USER


def test_the_storage_dir_itself_may_not_be_a_link(home: Path, tmp_path: Path) -> None:
    app_dir = home / ".local/share/sandbox/apps" / APP
    _setup(home / ".local" / "share")
    os.rmdir(app_dir / "saves")
    os.symlink(tmp_path, app_dir / "saves")
    with pytest.raises(ProviderError, match="not a directory"):
        _setup(home / ".local" / "share")


def test_an_existing_app_dir_is_made_private_again(tmp_path: Path) -> None:
    saves = _setup(tmp_path / "data", uid=os.geteuid())  # not privileged: the user's own run
    os.chmod(saves, 0o755)
    assert _setup(tmp_path / "data", uid=os.geteuid()) == saves
    assert saves.stat().st_mode & 0o777 == 0o700
