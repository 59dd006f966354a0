"""User probe: uid, gid, home, XDG base dirs and device group ids; reads pwd/grp, writes nothing."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sandbox.policy.facts import UserFacts

DEVICE_GROUPS = ("render", "video", "input", "audio")


@dataclass(frozen=True)
class Account:
    """What pwd says about a uid (tests build it directly)."""

    uid: int
    gid: int
    name: str | None
    home: str | None


def _xdg(env: Mapping[str, str], var: str, home: str | None, default: str) -> str | None:
    # The XDG spec ignores relative values.
    value = env.get(var, "")
    if value.startswith("/"):
        return value
    return os.path.join(home, default) if home else None


def user_facts(
    account: Account,
    env: Mapping[str, str],
    is_dir: Callable[[str], bool],
    group_ids: tuple[tuple[str, int], ...],
    *,
    via_sudo: bool = False,
) -> UserFacts:
    """UserFacts from an account, the environment and the host's device groups (pure)."""
    if via_sudo:
        # HOME and XDG_* still describe root under sudo; the user's own dirs come from passwd.
        env = {}
    # The login's HOME wins over the passwd entry, as every XDG library does.
    home = env.get("HOME") or account.home
    runtime_dir: str | None = env.get("XDG_RUNTIME_DIR") or None
    if runtime_dir is None:
        candidate = f"/run/user/{account.uid}"
        runtime_dir = candidate if is_dir(candidate) else None
    return UserFacts(
        available=True,
        uid=account.uid,
        gid=account.gid,
        name=account.name,
        home=home,
        runtime_dir=runtime_dir,
        data_home=_xdg(env, "XDG_DATA_HOME", home, ".local/share"),
        config_home=_xdg(env, "XDG_CONFIG_HOME", home, ".config"),
        cache_home=_xdg(env, "XDG_CACHE_HOME", home, ".cache"),
        group_ids=group_ids,
        via_sudo=via_sudo,
    )


def sudo_ids(uid: int, env: Mapping[str, str]) -> tuple[int, int] | None:
    """The invoking user's ids when root runs us through sudo (SUDO_UID/SUDO_GID), else None.

    Apps run as the human behind the launch, never as root only because the launcher needs
    root for the engine socket and the app cgroups.
    """
    sudo_uid, sudo_gid = env.get("SUDO_UID", ""), env.get("SUDO_GID", "")
    if uid != 0 or not (sudo_uid.isdigit() and sudo_gid.isdigit()) or int(sudo_uid) == 0:
        return None
    return int(sudo_uid), int(sudo_gid)


def _account(uid: int, gid: int) -> Account:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:  # a uid without a passwd entry, common in containers
        return Account(uid, gid, None, None)
    return Account(uid, gid, entry.pw_name, entry.pw_dir or None)


def _device_groups() -> tuple[tuple[str, int], ...]:
    found = []
    for name in DEVICE_GROUPS:
        try:
            found.append((name, grp.getgrnam(name).gr_gid))
        except KeyError:
            continue
    return tuple(found)


def probe(env: Mapping[str, str]) -> UserFacts:
    """Facts about the user the apps run as: the invoking user (the sudo caller under sudo)."""
    sudo = sudo_ids(os.getuid(), env)
    uid, gid = sudo if sudo is not None else (os.getuid(), os.getgid())
    return user_facts(
        _account(uid, gid), env, os.path.isdir, _device_groups(), via_sudo=sudo is not None
    )


def data_home(env: Mapping[str, str]) -> str:
    """The invoking user's $XDG_DATA_HOME (under sudo: that user's): saves, app records."""
    facts = probe(env)
    return facts.data_home or os.path.join(os.path.expanduser("~"), ".local", "share")
