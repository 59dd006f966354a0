"""The Grant every provider returns and the Provider protocol the runtime drives; no I/O here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from sandbox.errors import ProviderError
from sandbox.policy.plan import DeviceNode, EnvVar, Mount, MountKind


@dataclass(frozen=True)
class Grant:
    """Host resources one provider hands to one instance, in the plan's own types."""

    mounts: tuple[Mount, ...] = ()
    env: tuple[EnvVar, ...] = ()
    devices: tuple[DeviceNode, ...] = ()
    hostname: str | None = None  # the container must use it (X11's FamilyLocal cookie entry)
    group_ids: tuple[int, ...] = ()


def env_vars(pairs: Iterable[tuple[str, str]]) -> tuple[EnvVar, ...]:
    return tuple(EnvVar(name, value) for name, value in pairs)


def read_only_bind(source: Path, target: PurePosixPath) -> Mount:
    return Mount(target=str(target), kind=MountKind.BIND, source=str(source), read_only=True)


def combine(grants: Iterable[Grant]) -> Grant:
    """All grants as one; two providers asking for different hostnames is an error."""
    mounts: list[Mount] = []
    env: dict[str, EnvVar] = {}
    devices: list[DeviceNode] = []
    groups: list[int] = []
    hostname: str | None = None
    for g in grants:
        mounts += g.mounts
        for var in g.env:
            if var.name in env and env[var.name] != var:
                raise ProviderError(f"two providers set {var.name} differently")
            env[var.name] = var
        devices += g.devices
        groups += g.group_ids
        if g.hostname is not None:
            if hostname is not None and hostname != g.hostname:
                raise ProviderError(f"two providers need hostnames {hostname} and {g.hostname}")
            hostname = g.hostname
    targets = [m.target for m in mounts]
    if len(set(targets)) != len(targets):
        raise ProviderError(f"two grants mount at the same target: {sorted(targets)}")
    return Grant(
        tuple(mounts),
        tuple(env.values()),
        tuple(dict.fromkeys(devices)),
        hostname,
        tuple(dict.fromkeys(groups)),
    )


@dataclass(frozen=True)
class ProviderContext:
    """What a provider may know about the instance it serves."""

    app_id: str
    instance_dir: Path  # 0700, the user's; provider files and gc state live here
    uid: int  # the app's uid and gid in the container (files it must read are chowned to them)
    gid: int
    hostname: str  # the container's hostname
    data_home: Path  # the user's $XDG_DATA_HOME


class Provider(Protocol):
    """Turns one resource request into a Grant and undoes it.

    setup() is called once per instance; teardown() must be idempotent and safe after a failed
    or partial setup, because the session calls it in reverse order on every way out.
    """

    name: str

    def setup(self, ctx: ProviderContext) -> Grant: ...

    def teardown(self) -> None: ...
