"""Manifest + policy layers + host facts -> LaunchPlan, shared by plan and run; starts nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from sandbox.host import names
from sandbox.policy.facts import HostFacts
from sandbox.policy.layers import (
    BUILTIN_DEFAULTS,
    Decision,
    EffectivePolicy,
    SitePolicy,
    merge,
)
from sandbox.policy.manifest import Manifest
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.vocabulary import Capability, Permission
from sandbox.probes import Resource

# The probe whose facts each capability's rule reads; docker, cgroups and user are always probed.
PROBE_FOR: Mapping[Capability, Resource] = {
    Capability.DISPLAY_X11: Resource.X11,
    Capability.DISPLAY_X11_TRUSTED: Resource.X11,
    Capability.DISPLAY_WAYLAND: Resource.WAYLAND,
    Capability.AUDIO_PLAYBACK: Resource.AUDIO,
    Capability.AUDIO_RECORD: Resource.AUDIO,
    Capability.GPU: Resource.DEVICES,
    Capability.WEBCAM: Resource.DEVICES,
    Capability.GAMEPAD: Resource.DEVICES,
}


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

    catalog = load_catalog()
    site = _as_claimed(load_site_policy(site_policy), manifest.app.id)
    override = load_override(manifest.app.id, overrides)
    policy = merge(BUILTIN_DEFAULTS, manifest, site, override, catalog=catalog)
    return engine.plan(policy, facts, catalog=catalog)


def _as_claimed(site: SitePolicy, app_id: str) -> SitePolicy:
    """An unverified copy gets the site's denials for the id it claims, besides its own."""
    claimed = names.unverified_of(app_id)
    if claimed is None or claimed not in site.deny_for_app:
        return site
    per_app = dict(site.deny_for_app)
    per_app[app_id] = per_app.get(app_id, frozenset()) | site.deny_for_app[claimed]
    return dataclasses.replace(site, deny_for_app=per_app)


def asked(policy: EffectivePolicy) -> frozenset[Permission]:
    """Every permission the policy has an opinion on: granted, denied or revoked."""
    return frozenset(
        e.permission for e in policy.entries if e.decision is not Decision.NOT_REQUESTED
    )


def probes_for(permissions: Iterable[Permission]) -> frozenset[Resource]:
    return frozenset(
        PROBE_FOR[p] for p in permissions if isinstance(p, Capability) and p in PROBE_FOR
    )


def probe_for(manifest: Manifest, env: Mapping[str, str] | None = None) -> HostFacts:
    """Probe, concurrently, only what this app's requests need (engine, cgroups, user always).

    A skipped probe reads as unavailable with the reason "not requested by this app"; the plan
    reports nothing from it because nothing asked for it. Saves ~100 ms on a trivial app.
    """
    from sandbox.probes import probe_host

    # Defaults < manifest only: what a site denies needs no facts, and the site policy that
    # plan_for() reads may be another file than the default one.
    policy = merge(BUILTIN_DEFAULTS, manifest, SitePolicy(), None)
    return probe_host(env, only=probes_for(asked(policy)))
