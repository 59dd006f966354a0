"""The plan step of a launch: a resolved image -> probe, plan, providers; creates nothing.

Which image an APP-ID names (an install record, the newest labelled image) is decided above,
in sandbox/distribution/resolve.py; this module only receives the answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sandbox.engine.records import ImageConfig
from sandbox.policy.facts import HostFacts
from sandbox.policy.manifest import Manifest
from sandbox.policy.plan import LaunchPlan
from sandbox.providers.grant import Provider


@dataclass(frozen=True)
class ResolvedImage:
    """What to run, as the caller resolved it, and on which engine."""

    image: str  # an image id or reference the engine knows
    manifest: Manifest  # read from that image's labels (or its install record)
    engine_url: str  # the engine the image was found on
    requested_engine: str | None = None  # --docker-host / engine_url as the user gave it
    # the config read with the labels (its VOLUMEs are masked); None: launch reads it itself
    config: ImageConfig | None = None


@dataclass(frozen=True)
class Prepared:
    """Everything decided before consent: what runs, where, with which permissions."""

    image: str
    manifest: Manifest
    facts: HostFacts
    plan: LaunchPlan  # as it will really run (unserved requests already UNAVAILABLE)
    providers: tuple[Provider, ...]
    engine_url: str
    image_config: ImageConfig | None = None  # as resolved; None: launch() inspects the image


def prepare(
    resolved: ResolvedImage,
    *,
    site_policy: Path | None = None,
    overrides: Path | None = None,
) -> Prepared:
    """Probe what the manifest needs, plan, and pick the providers; nothing is created yet."""
    from sandbox.providers.registry import providers_for
    from sandbox.runtime.planning import plan_merged, policy_for, probe_merged

    env = dict(os.environ)
    if resolved.requested_engine:
        env["DOCKER_HOST"] = resolved.requested_engine  # describe the engine we launch on
    merged = policy_for(resolved.manifest, site_policy=site_policy, overrides=overrides)
    facts = probe_merged(merged, env)
    launch_plan = plan_merged(merged, facts)
    launch_plan, providers = providers_for(launch_plan)
    return Prepared(
        resolved.image,
        resolved.manifest,
        facts,
        launch_plan,
        providers,
        resolved.engine_url,
        resolved.config,
    )
