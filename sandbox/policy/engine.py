"""engine.plan(): merged policy + HostFacts -> LaunchPlan, pure and fail-closed; no I/O at all."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from sandbox.errors import PolicyError
from sandbox.host import names
from sandbox.policy import device_grants, gpu_diagnosis, grants
from sandbox.policy.facts import CgroupDriver, HostFacts
from sandbox.policy.invariants import IN_PLAY, assert_invariants
from sandbox.policy.layers import CatalogLike, Decision, EffectivePolicy, PolicyEntry
from sandbox.policy.outcome import Ask, Outcome
from sandbox.policy.plan import (
    NOBODY_ID,
    CgroupDriverName,
    CgroupParent,
    EnvVar,
    GrantState,
    GrantStatus,
    Labels,
    LaunchPlan,
    NetworkMode,
    UserSpec,
    X11CookieRequest,
    baseline_hardening,
)
from sandbox.policy.vocabulary import Capability, Permission, Storage

ENV_APP_ID = "SANDBOX_APP_ID"

_T = TypeVar("_T")

# A decision other than GRANTED settles the outcome before the host is looked at.
_NOT_GRANTED: Mapping[Decision, Outcome] = {
    Decision.NOT_REQUESTED: Outcome(GrantState.NOT_REQUESTED),
    Decision.DENIED_BY_SITE: Outcome(GrantState.DENIED_BY_SITE, "denied by the site policy"),
    Decision.REVOKED_BY_USER: Outcome(GrantState.REVOKED_BY_USER, "revoked by you"),
}

# Which rule judges each granted capability on this host; storage.<name> has its own.
RULES: Mapping[Capability, Callable[[Ask], Outcome]] = {
    Capability.DISPLAY_WAYLAND: grants.wayland,
    Capability.DISPLAY_X11: grants.x11,
    Capability.DISPLAY_X11_TRUSTED: grants.x11_trusted,
    Capability.AUDIO_PLAYBACK: grants.audio,
    Capability.AUDIO_RECORD: grants.audio,
    Capability.NETWORK: grants.network,
    Capability.GPU: device_grants.gpu,
    Capability.WEBCAM: device_grants.webcam,
    Capability.GAMEPAD: device_grants.gamepad,
}


def plan(policy: EffectivePolicy, facts: HostFacts, *, catalog: CatalogLike) -> LaunchPlan:
    """Turn the merged policy into directives for this host; raises PolicyError, never weakens."""
    app_id = names.check_app_id(policy.app.id)
    granted = policy.granted()
    outcomes: dict[Permission, Outcome] = {}
    for entry in policy.entries:
        outcomes[entry.permission] = _outcome(entry, policy, facts, granted)

    statuses: list[GrantStatus] = []
    for entry in policy.entries:
        info = catalog.get(entry.permission)
        o = outcomes[entry.permission]
        statuses.append(
            GrantStatus(
                permission=entry.permission,
                state=o.state,
                title=info.title,
                risk=info.risk,
                detail=o.detail,
                conditional=entry.conditional,
                user_granted=entry.user_granted,
                implied_by=entry.implied_by,
            )
        )
    effective = {p for p, o in outcomes.items() if o.state is GrantState.GRANTED}
    used = [o for o in outcomes.values() if o.state is GrantState.GRANTED]

    notes: list[str] = []
    if facts.user.available and facts.user.uid >= 0:
        user = UserSpec(facts.user.uid, facts.user.gid)
    else:
        user = UserSpec(NOBODY_ID, NOBODY_ID)
        notes.append(f"the invoking user is unknown ({facts.user.reason}); the app runs as nobody")
    gpu_outcome = outcomes.get(Capability.GPU)
    if gpu_outcome is not None and gpu_outcome.state in IN_PLAY:
        untrusted_x11_only = Capability.DISPLAY_WAYLAND not in effective and any(
            isinstance(r, X11CookieRequest) and not r.trusted for o in used for r in o.requests
        )
        diagnosis = gpu_diagnosis.diagnose_gpu(facts, untrusted_x11_only=untrusted_x11_only)
        notes += diagnosis.problems
    network = NetworkMode.APP if Capability.NETWORK in effective else NetworkMode.NONE
    hardening = dataclasses.replace(baseline_hardening(user), network=network)

    if facts.docker.cgroup_driver is CgroupDriver.SYSTEMD:
        parent = CgroupParent(CgroupDriverName.SYSTEMD, names.app_slice_name(app_id))
    else:
        parent = CgroupParent(CgroupDriverName.CGROUPFS, names.cgroup_parent_cgroupfs(app_id))

    result = LaunchPlan(
        app=policy.app,
        statuses=tuple(statuses),
        hardening=hardening,
        limits=policy.limits,
        labels=Labels(app_id=app_id, app_version=policy.app.version),
        cgroup_parent=parent,
        devices=_unique(d for o in used for d in o.devices),
        device_cgroup_rules=_unique(r for o in used for r in o.rules),
        groups=_unique(g for o in used for g in o.groups),
        env=(EnvVar(ENV_APP_ID, app_id),),
        requests=_unique(r for o in used for r in o.requests),
        notes=tuple(notes),
    )
    assert_invariants(result, policy, facts)
    return result


def _unique(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def _outcome(
    entry: PolicyEntry, policy: EffectivePolicy, facts: HostFacts, granted: frozenset[Permission]
) -> Outcome:
    settled = _NOT_GRANTED.get(entry.decision)
    if settled is not None:
        return settled
    ask = Ask(entry, policy, facts, granted)
    p = entry.permission
    if isinstance(p, Storage):
        return grants.storage(ask)
    rule = RULES.get(p)
    if rule is None:
        raise PolicyError(f"{p}: the engine does not know this capability")  # fail closed
    return rule(ask)
