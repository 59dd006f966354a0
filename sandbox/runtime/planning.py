"""Manifest + policy layers + host facts -> LaunchPlan, shared by plan and run; starts nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sandbox.host import names
from sandbox.policy.catalog import Catalog
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


@dataclass(frozen=True)
class MergedPolicy:
    """The layers read and merged once for one app, with the catalog they were merged under."""

    policy: EffectivePolicy
    catalog: Catalog


def policy_for(
    manifest: Manifest, *, site_policy: Path | None = None, overrides: Path | None = None
) -> MergedPolicy:
    """Read the site policy and the user's override and merge defaults < manifest < site < user."""
    from sandbox.config.catalog import load_catalog
    from sandbox.config.layers import load_override, load_site_policy

    catalog = load_catalog()
    site = _as_claimed(load_site_policy(site_policy), manifest.app.id)
    override = load_override(manifest.app.id, overrides)
    return MergedPolicy(merge(BUILTIN_DEFAULTS, manifest, site, override, catalog=catalog), catalog)


def plan_merged(merged: MergedPolicy, facts: HostFacts) -> LaunchPlan:
    """The pure plan of an already merged policy for `facts`."""
    from sandbox.policy import engine

    return engine.plan(merged.policy, facts, catalog=merged.catalog)


def plan_for(
    manifest: Manifest,
    facts: HostFacts,
    *,
    site_policy: Path | None = None,
    overrides: Path | None = None,
) -> LaunchPlan:
    """Merge defaults < manifest < site < user override and plan it for `facts`."""
    return plan_merged(policy_for(manifest, site_policy=site_policy, overrides=overrides), facts)


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


def probe_merged(merged: MergedPolicy, env: Mapping[str, str] | None = None) -> HostFacts:
    """Probe, concurrently, only what the merged policy asks about (engine, cgroups, user always).

    A skipped probe reads as unavailable with the reason "not requested by this app"; the plan
    reports nothing from it because nothing asked for it (saves ~100 ms on a trivial app). The
    layers are merged once per launch, so a permission only the user's override grants is
    probed too.
    """
    from sandbox.probes import probe_host

    return probe_host(env, only=probes_for(asked(merged.policy)))
