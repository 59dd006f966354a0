"""User probe: XDG defaults and overrides from a fake account and environment."""

from __future__ import annotations

import grp
import os

from sandbox.probes import user

ACCOUNT = user.Account(uid=1000, gid=1000, name="alice", home="/home/alice")


def test_defaults_follow_the_xdg_spec() -> None:
    facts = user.user_facts(ACCOUNT, {}, lambda p: p == "/run/user/1000", ())
    assert facts.available
    assert (facts.uid, facts.gid, facts.name, facts.home) == (1000, 1000, "alice", "/home/alice")
    assert facts.runtime_dir == "/run/user/1000"
    assert facts.data_home == "/home/alice/.local/share"
    assert facts.config_home == "/home/alice/.config"
    assert facts.cache_home == "/home/alice/.cache"


def test_environment_overrides_and_relative_values_are_ignored() -> None:
    env = {
        "HOME": "/srv/alice",
        "XDG_RUNTIME_DIR": "/tmp/rt",
        "XDG_DATA_HOME": "/data",
        "XDG_CONFIG_HOME": "relative/config",
        "XDG_CACHE_HOME": "/cache",
    }
    facts = user.user_facts(ACCOUNT, env, lambda _: False, ())
    assert facts.home == "/srv/alice"
    assert facts.runtime_dir == "/tmp/rt"
    assert facts.data_home == "/data"
    assert facts.config_home == "/srv/alice/.config"
    assert facts.cache_home == "/cache"


def test_no_runtime_dir_when_none_exists() -> None:
    assert user.user_facts(ACCOUNT, {}, lambda _: False, ()).runtime_dir is None


def test_uid_without_passwd_entry_still_has_facts() -> None:
    facts = user.user_facts(user.Account(4242, 4242, None, None), {}, lambda _: False, ())
    assert facts.available and facts.name is None and facts.data_home is None


def test_probe_reports_this_process_and_existing_device_groups() -> None:
    facts = user.probe(dict(os.environ))
    assert (facts.uid, facts.gid) == (os.getuid(), os.getgid())
    for name, gid in facts.group_ids:
        assert name in user.DEVICE_GROUPS
        assert grp.getgrnam(name).gr_gid == gid
    names = {n for n, _ in facts.group_ids}
    for name in user.DEVICE_GROUPS:
        if name not in names:
            try:
                grp.getgrnam(name)
            except KeyError:
                continue
            raise AssertionError(f"group {name} exists but was not reported")


def test_sudo_names_the_invoking_user_not_root() -> None:
    assert user.sudo_ids(0, {"SUDO_UID": "1000", "SUDO_GID": "1000"}) == (1000, 1000)
    assert user.sudo_ids(1000, {"SUDO_UID": "1001", "SUDO_GID": "1001"}) is None  # not root
    assert user.sudo_ids(0, {"SUDO_UID": "0", "SUDO_GID": "0"}) is None  # root's own sudo
    assert user.sudo_ids(0, {"SUDO_UID": "x", "SUDO_GID": "1"}) is None
    assert user.sudo_ids(0, {}) is None


def test_under_sudo_root_environment_is_not_the_users() -> None:
    root_env = {"HOME": "/root", "XDG_DATA_HOME": "/root/.local/share"}
    facts = user.user_facts(ACCOUNT, root_env, lambda _: False, (), via_sudo=True)
    assert facts.via_sudo
    assert facts.home == ACCOUNT.home
    assert facts.data_home == f"{ACCOUNT.home}/.local/share"
