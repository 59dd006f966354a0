"""Manifest + policy layers + host facts -> LaunchPlan, shared by plan and run; starts nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sandbox.policy.facts import HostFacts
from sandbox.policy.layers import requested
from sandbox.policy.manifest import Manifest
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.vocabulary import Capability


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


def probe_for(manifest: Manifest, env: Mapping[str, str] | None = None) -> HostFacts:
    """Probe, concurrently, only what this app's requests need (engine, cgroups, user always).

    A skipped probe reads as unavailable with the reason "not requested by this app"; the plan
    reports nothing from it because nothing asked for it. Saves ~100 ms on a trivial app.
    """
    from sandbox.probes import Resource, probe_host

    wanted = requested(manifest).all()
    only = {Resource.DOCKER, Resource.CGROUPS, Resource.USER}
    if wanted & {Capability.DISPLAY_X11, Capability.DISPLAY_X11_TRUSTED}:
        only.add(Resource.X11)
    if Capability.DISPLAY_WAYLAND in wanted:
        only.add(Resource.WAYLAND)
    if wanted & {Capability.AUDIO_PLAYBACK, Capability.AUDIO_RECORD}:
        only.add(Resource.AUDIO)
    if wanted & {Capability.GPU, Capability.WEBCAM, Capability.GAMEPAD}:
        only.add(Resource.DEVICES)
    return probe_host(env, only=frozenset(only))
