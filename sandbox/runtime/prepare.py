"""The plan step of a launch: a resolved image -> probe, plan, providers; creates nothing.

Which image a target names and which identity it runs as (an installed app's, or a throwaway
one for an image no install vouches for) is decided above, in sandbox/distribution/resolve.py;
this module only receives the answer.
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
    # The app id the image claims when it runs as a throwaway identity (manifest.app.id is
    # then host/names.unverified_app_id of it); None when it runs as itself (installed).
    unverified_of: str | None = None


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
    unverified_of: str | None = None  # as in ResolvedImage: the id an unverified copy claims


def identity_note(prepared: Prepared) -> str | None:
    """The line the review must carry when the app runs as an unverified copy; else None."""
    if prepared.unverified_of is None:
        return None
    return (
        f"Identity: runs as an unverified copy of {prepared.unverified_of}; its data is "
        f"separate (not installed, so it runs as {prepared.manifest.app.id})"
    )


def review(prepared: Prepared) -> str:
    """The permission review to show before launch(): the plan's, with the identity note."""
    from sandbox.policy.review import review_text

    text = review_text(prepared.plan)
    note = identity_note(prepared)
    if note is None:
        return text
    head, _, rest = text.partition("\n")  # under the app's name line
    return f"{head}\n{note}\n{rest}"


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
        image_config=resolved.config,
        unverified_of=resolved.unverified_of,
    )
