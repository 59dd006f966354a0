"""Layers: requested(), adds_permissions(), merge precedence."""

from __future__ import annotations

import pytest
from engine_support import APP_ID, catalog, manifest

from sandbox.errors import PolicyError
from sandbox.policy.layers import (
    BUILTIN_DEFAULTS,
    IMPLIES,
    Decision,
    PermissionSet,
    SitePolicy,
    UserOverride,
    adds_permissions,
    implied,
    merge,
    requested,
)
from sandbox.policy.manifest import Limits as ManifestLimits
from sandbox.policy.plan import DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, DEFAULT_PIDS
from sandbox.policy.vocabulary import AudioMode, Capability, DisplayRequest, Risk, Storage

C = Capability
D = DisplayRequest


def test_requested_keeps_wayland_or_x11_conditional() -> None:
    got = requested(manifest(D.WAYLAND_OR_X11))
    assert got.permissions == {C.DISPLAY_WAYLAND}
    assert got.fallbacks == {C.DISPLAY_X11}


def test_requested_maps_every_field() -> None:
    got = requested(
        manifest(
            D.X11_TRUSTED,
            (AudioMode.PLAYBACK, AudioMode.RECORD),
            gpu=True,
            webcam=True,
            gamepad=True,
            network=True,
            storage=(("saves", "/s"), ("cache", "/c")),
        )
    )
    assert got == PermissionSet(
        frozenset(
            {C.DISPLAY_X11_TRUSTED, C.AUDIO_PLAYBACK, C.AUDIO_RECORD, C.GPU, C.WEBCAM}
            | {C.GAMEPAD, C.NETWORK, Storage("saves"), Storage("cache")}
        )
    )
    assert requested(manifest()) == PermissionSet()


@pytest.mark.parametrize(
    ("old", "new", "added"),
    [
        (D.X11, D.X11_TRUSTED, [C.DISPLAY_X11_TRUSTED]),
        (D.WAYLAND_OR_X11, D.X11_TRUSTED, [C.DISPLAY_X11_TRUSTED]),
        (D.WAYLAND_OR_X11, D.X11, [C.DISPLAY_X11]),  # fallback -> unconditional counts
        (D.X11, D.WAYLAND_OR_X11, [C.DISPLAY_WAYLAND]),
        (D.WAYLAND, D.WAYLAND_OR_X11, [C.DISPLAY_X11]),
        (D.X11_TRUSTED, D.X11, []),  # less
        (D.X11_TRUSTED, D.WAYLAND_OR_X11, [C.DISPLAY_WAYLAND]),
        (D.WAYLAND_OR_X11, D.WAYLAND, []),
        (D.WAYLAND_OR_X11, D.WAYLAND_OR_X11, []),
        (None, D.WAYLAND, [C.DISPLAY_WAYLAND]),
    ],
)
def test_adds_permissions_display(
    old: DisplayRequest | None, new: DisplayRequest, added: list[Capability]
) -> None:
    assert list(adds_permissions(manifest(old), manifest(new))) == added


def test_adds_permissions_other() -> None:
    old = manifest(audio=(AudioMode.PLAYBACK,), storage=(("saves", "/a"),))
    assert adds_permissions(old, manifest(audio=(AudioMode.RECORD,))) == (C.AUDIO_RECORD,)
    # a storage path change keeps the same per-app host dir: no consent needed
    assert adds_permissions(old, manifest(storage=(("saves", "/b"),))) == ()
    assert adds_permissions(old, manifest(storage=(("logs", "/a"),))) == (Storage("logs"),)
    assert adds_permissions(manifest(audio=(AudioMode.RECORD,)), old) == (Storage("saves"),)
    # also on plain permission sets
    assert adds_permissions(PermissionSet(), PermissionSet(frozenset({C.GPU}))) == (C.GPU,)


def test_implies_table_matches_the_packaged_catalog() -> None:
    cat = catalog()
    for cap in Capability:
        assert implied(cap, None) == implied(cap, cat), cap
    assert set(IMPLIES) <= set(Capability)


def test_merge_precedence_and_reset() -> None:
    m = manifest(D.WAYLAND, (AudioMode.PLAYBACK,), gpu=True)
    site = SitePolicy(deny=frozenset({C.GPU}))
    user = UserOverride(
        APP_ID, grant=frozenset({C.GPU, C.NETWORK}), revoke=frozenset({C.AUDIO_PLAYBACK})
    )
    policy = merge(BUILTIN_DEFAULTS, m, site, user)
    assert policy.decision(C.GPU) is Decision.DENIED_BY_SITE  # site beats user grant
    assert policy.decision(C.NETWORK) is Decision.GRANTED  # explicit grant beyond manifest
    entry = policy.entry(C.NETWORK)
    assert entry is not None and entry.user_granted
    assert policy.decision(C.AUDIO_PLAYBACK) is Decision.REVOKED_BY_USER
    assert policy.decision(C.DISPLAY_WAYLAND) is Decision.GRANTED
    # reset of one permission returns it to the manifest's word, reset of all to the manifest
    back = merge(BUILTIN_DEFAULTS, m, site, user.with_reset(C.AUDIO_PLAYBACK))
    assert back.decision(C.AUDIO_PLAYBACK) is Decision.GRANTED
    assert back.decision(C.NETWORK) is Decision.GRANTED
    plain = merge(BUILTIN_DEFAULTS, m, site, user.with_reset())
    assert plain.decision(C.NETWORK) is Decision.NOT_REQUESTED
    assert plain == merge(BUILTIN_DEFAULTS, m, site, None)


def test_user_grant_makes_a_fallback_unconditional() -> None:
    m = manifest(D.WAYLAND_OR_X11)
    assert merge(BUILTIN_DEFAULTS, m, SitePolicy(), None).entry(C.DISPLAY_X11).conditional  # type: ignore[union-attr]
    user = UserOverride(APP_ID, grant=frozenset({C.DISPLAY_X11}))
    entry = merge(BUILTIN_DEFAULTS, m, SitePolicy(), user).entry(C.DISPLAY_X11)
    assert entry is not None and not entry.conditional and not entry.user_granted


def test_override_for_another_app_is_refused() -> None:
    with pytest.raises(PolicyError, match="not for"):
        merge(BUILTIN_DEFAULTS, manifest(), SitePolicy(), UserOverride("org.other.App"))


def test_max_risk_without_catalog_fails_closed() -> None:
    with pytest.raises(PolicyError, match="max-risk"):
        merge(BUILTIN_DEFAULTS, manifest(), SitePolicy(max_risk=Risk.LOW), None)


def test_override_transitions() -> None:
    o = UserOverride(APP_ID).with_grant(C.GPU).with_revoke(C.NETWORK)
    assert (o.grant, o.revoke) == ({C.GPU}, {C.NETWORK})
    o = o.with_revoke(C.GPU)
    assert (o.grant, o.revoke) == (frozenset(), {C.GPU, C.NETWORK})
    assert o.with_reset().is_empty
    with pytest.raises(PolicyError, match="both granted and revoked"):
        UserOverride(APP_ID, frozenset({C.GPU}), frozenset({C.GPU}))


def test_limits_defaults_manifest_and_site_caps() -> None:
    base = merge(BUILTIN_DEFAULTS, manifest(), SitePolicy(), None).limits
    assert (base.memory_bytes, base.cpus, base.pids) == (
        DEFAULT_MEMORY_BYTES,
        DEFAULT_CPUS,
        DEFAULT_PIDS,
    )
    m = manifest()
    big = type(m)(
        app=m.app, capabilities=m.capabilities, limits=ManifestLimits(8 * 1024**3, 8.0, 9000)
    )
    capped = merge(
        BUILTIN_DEFAULTS,
        big,
        SitePolicy(max_memory_bytes=1024**3, max_cpus=1.0, max_pids=100),
        None,
    )
    assert (capped.limits.memory_bytes, capped.limits.cpus, capped.limits.pids) == (
        1024**3,
        1.0,
        100,
    )
