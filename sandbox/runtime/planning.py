"""Manifest + policy layers + host facts -> LaunchPlan: the steps `plan` and `run` share."""

from __future__ import annotations

import dataclasses
import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from sandbox.policy.facts import (
    AudioFacts,
    DeviceFacts,
    HostFacts,
    UserFacts,
    WaylandFacts,
    X11Facts,
)
from sandbox.policy.layers import requested
from sandbox.policy.manifest import Manifest
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.vocabulary import Capability

_NOT_NEEDED = "not requested by this app"


def plan_for(
    manifest: Manifest,
    facts: HostFacts,
    *,
    site_policy: Path | None = None,
    overrides: Path | None = None,
) -> LaunchPlan:
    """Merge defaults < manifest < site < user override and plan it for `facts`."""
    from sandbox.config.catalog import load_catalog
    from sandbox.config.layers import load_override, load_site_policy
    from sandbox.policy import engine
    from sandbox.policy.layers import BUILTIN_DEFAULTS, merge

    catalog = load_catalog()
    site = load_site_policy(site_policy)
    override = load_override(manifest.app.id, overrides)
    policy = merge(BUILTIN_DEFAULTS, manifest, site, override, catalog=catalog)
    return engine.plan(policy, facts, catalog=catalog)


def invoking_user(user: UserFacts, env: Mapping[str, str] | None = None) -> UserFacts:
    """The human behind the launch: under sudo (root with SUDO_UID/SUDO_GID) that user, with
    their home and XDG dirs, so apps never run as root and saves land in the user's home.
    A root launch without sudo stays root (all capabilities are dropped either way)."""
    environ = os.environ if env is None else env
    sudo_uid, sudo_gid = environ.get("SUDO_UID", ""), environ.get("SUDO_GID", "")
    if not (user.available and user.uid == 0 and sudo_uid.isdigit() and sudo_gid.isdigit()):
        return user
    uid, gid = int(sudo_uid), int(sudo_gid)
    if uid == 0:
        return user
    try:
        entry = pwd.getpwuid(uid)
        name, home = entry.pw_name, entry.pw_dir
    except KeyError:
        name, home = None, None
    data_home = os.path.join(home, ".local", "share") if home else None
    run_dir = f"/run/user/{uid}"
    return dataclasses.replace(
        user,
        uid=uid,
        gid=gid,
        name=name,
        home=home,
        data_home=data_home,
        config_home=os.path.join(home, ".config") if home else None,
        cache_home=os.path.join(home, ".cache") if home else None,
        runtime_dir=run_dir if os.path.isdir(run_dir) else None,
    )


def probe_for(manifest: Manifest, env: Mapping[str, str] | None = None) -> HostFacts:
    """Probe only what this app's requests need (engine, cgroups and user always).

    A skipped probe reads as unavailable with the reason "not requested by this app"; the plan
    reports nothing from it because nothing asked for it. Saves ~100 ms on a trivial app.
    """
    from sandbox.probes import (
        PROBE_TIMEOUT_S,
        cgroups,
        docker,
        user,
    )

    environ: Mapping[str, str] = dict(os.environ if env is None else env)
    wanted = requested(manifest).all()
    x11: X11Facts = X11Facts(False, _NOT_NEEDED)
    wayland = WaylandFacts(False, _NOT_NEEDED)
    audio = AudioFacts(False, _NOT_NEEDED)
    devices = DeviceFacts(False, _NOT_NEEDED)
    if wanted & {Capability.DISPLAY_X11, Capability.DISPLAY_X11_TRUSTED}:
        from sandbox.probes import x11 as x11_probe

        x11 = x11_probe.probe(environ, PROBE_TIMEOUT_S)
    if Capability.DISPLAY_WAYLAND in wanted:
        from sandbox.probes import wayland as wayland_probe

        wayland = wayland_probe.probe(environ, PROBE_TIMEOUT_S)
    if wanted & {Capability.AUDIO_PLAYBACK, Capability.AUDIO_RECORD}:
        from sandbox.probes import pulse

        audio = pulse.probe(environ, PROBE_TIMEOUT_S)
    if wanted & {Capability.GPU, Capability.WEBCAM, Capability.GAMEPAD}:
        from sandbox.probes import devices as devices_probe

        devices = devices_probe.probe(environ)
    return HostFacts(
        docker=docker.probe(environ, PROBE_TIMEOUT_S),
        x11=x11,
        wayland=wayland,
        audio=audio,
        devices=devices,
        cgroups=cgroups.probe(environ),
        user=invoking_user(user.probe(environ), environ),
    )
