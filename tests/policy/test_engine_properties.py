"""Hypothesis: over generated manifests, site policies, overrides and hosts, the guarantees hold."""

from __future__ import annotations

import dataclasses

from engine_support import APP_ID, bare_host, catalog, desktop, manifest, nvidia_host, x11_host
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.policy import engine
from sandbox.policy.facts import HostFacts
from sandbox.policy.layers import BUILTIN_DEFAULTS, Decision, SitePolicy, UserOverride, merge
from sandbox.policy.manifest import Manifest
from sandbox.policy.plan import (
    GrantState,
    MountKind,
    NamespaceMode,
    NetworkMode,
    baseline_hardening,
)
from sandbox.policy.vocabulary import (
    AudioMode,
    Capability,
    DisplayRequest,
    Permission,
    Risk,
    Storage,
)

STORAGE_NAMES = ["saves", "cache", "logs"]
PERMISSIONS: list[Permission] = [*Capability, *(Storage(n) for n in STORAGE_NAMES)]

manifests = st.builds(
    manifest,
    st.none() | st.sampled_from(DisplayRequest),
    st.lists(st.sampled_from(AudioMode), unique=True).map(tuple),
    gpu=st.booleans(),
    webcam=st.booleans(),
    gamepad=st.booleans(),
    network=st.booleans(),
    storage=st.lists(st.sampled_from(STORAGE_NAMES), unique=True).map(
        lambda names: tuple((n, f"/home/app/{n}") for n in names)
    ),
)
perm_sets = st.frozensets(st.sampled_from(PERMISSIONS))
sites = st.builds(
    SitePolicy,
    deny=perm_sets,
    deny_for_app=st.dictionaries(st.sampled_from([APP_ID, "org.other.App"]), perm_sets),
    max_risk=st.none() | st.sampled_from(Risk),
)
overrides = (
    st.tuples(perm_sets, perm_sets).map(lambda gr: UserOverride(APP_ID, gr[0] - gr[1], gr[1]))
    | st.none()
)
hosts = st.sampled_from(
    [
        bare_host(),
        x11_host(),
        x11_host(security=False),
        desktop(),
        nvidia_host(runtime=True),
        nvidia_host(runtime=False),
    ]
)


def _run(m: Manifest, site: SitePolicy, user: UserOverride | None, facts: HostFacts):  # type: ignore[no-untyped-def]
    cat = catalog()
    policy = merge(BUILTIN_DEFAULTS, m, site, user, catalog=cat)
    return policy, engine.plan(policy, facts, catalog=cat)


@settings(max_examples=300, deadline=None)
@given(manifests, sites, overrides, hosts)
def test_guarantees(
    m: Manifest, site: SitePolicy, user: UserOverride | None, facts: HostFacts
) -> None:
    policy, plan = _run(m, site, user, facts)
    h = plan.hardening
    granted = plan.granted()

    # the baseline is in every plan; only `network` varies, and only with the capability
    assert dataclasses.replace(h, network=NetworkMode.NONE) == baseline_hardening(h.user)
    assert h.network in (NetworkMode.NONE, NetworkMode.BRIDGE)
    assert (h.network is NetworkMode.BRIDGE) == (Capability.NETWORK in granted)

    # the never-list
    assert not h.privileged and h.cap_add == () and h.cap_drop == ("ALL",)
    assert NamespaceMode.HOST not in (h.ipc, h.pid, h.uts)
    for mount in plan.mounts:
        assert mount.kind is not MountKind.BIND or mount.source not in (
            "/",
            "/home",
            "/var/run/docker.sock",
        )
    allowed = {
        (n.path, n.major, n.minor)
        for n in engine.plan(
            merge(
                BUILTIN_DEFAULTS, manifest(gpu=True, webcam=True, gamepad=True), SitePolicy(), None
            ),
            facts,
            catalog=catalog(),
        ).devices
    }
    for dev in plan.devices:
        assert dev.capability in granted
        assert (dev.path, dev.major, dev.minor) in allowed

    # denied or revoked never comes back; unavailable grants stay listed
    site_denied = site.denied_for(APP_ID)
    for p in PERMISSIONS:
        status = plan.status(p)
        if p in site_denied and status is not None:
            assert status.state in (GrantState.DENIED_BY_SITE, GrantState.NOT_REQUESTED)
        if user is not None and p in user.revoke and status is not None:
            assert status.state is not GrantState.GRANTED
    for entry in policy.entries:
        status = plan.status(entry.permission)
        assert status is not None, entry.permission
        if entry.decision is Decision.GRANTED:
            assert status.state in (
                GrantState.GRANTED,
                GrantState.UNAVAILABLE,
                GrantState.FALLBACK_UNUSED,
            )
        else:
            assert status.state.value == entry.decision.value

    # a trusted X cookie only with display.x11-trusted granted
    for r in plan.requests:
        if getattr(r, "trusted", False):
            assert Capability.DISPLAY_X11_TRUSTED in granted
        if getattr(r, "record", False):
            assert Capability.AUDIO_RECORD in granted


@settings(max_examples=100, deadline=None)
@given(manifests, sites, overrides, hosts)
def test_plan_is_deterministic(
    m: Manifest, site: SitePolicy, user: UserOverride | None, facts: HostFacts
) -> None:
    assert _run(m, site, user, facts) == _run(m, site, user, facts)
