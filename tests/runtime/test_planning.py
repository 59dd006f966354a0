"""planning: the probes come from the merged policy's asks, one table for every capability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox.policy.layers import BUILTIN_DEFAULTS, SitePolicy, UserOverride, merge
from sandbox.policy.manifest import AppInfo, Capabilities, Manifest, StorageSpec
from sandbox.policy.vocabulary import AudioMode, Capability, DisplayRequest
from sandbox.probes import Resource
from sandbox.runtime.planning import PROBE_FOR, asked, plan_for, policy_for, probes_for

APP = AppInfo(id="com.example.Game", name="Game", version="1", command=("/bin/game",))


def _probes(**capabilities: Any) -> frozenset[Resource]:
    m = Manifest(app=APP, capabilities=Capabilities(**capabilities))
    return probes_for(asked(merge(BUILTIN_DEFAULTS, m, SitePolicy(), None)))


def test_a_trivial_app_needs_no_optional_probe() -> None:
    assert _probes() == frozenset()
    assert _probes(network=True, storage=(StorageSpec("saves", "/data"),)) == frozenset()


def test_wayland_or_x11_probes_both_and_record_probes_audio() -> None:
    assert _probes(display=DisplayRequest.WAYLAND_OR_X11) == {Resource.WAYLAND, Resource.X11}
    assert _probes(display=DisplayRequest.X11_TRUSTED) == {Resource.X11}
    assert _probes(audio=frozenset({AudioMode.RECORD})) == {Resource.AUDIO}
    assert _probes(gamepad=True, webcam=True) == {Resource.DEVICES}


def test_every_capability_with_host_facts_has_a_probe() -> None:
    assert set(PROBE_FOR) == set(Capability) - {Capability.NETWORK}


def test_the_launch_merges_once_and_probes_what_the_override_grants(tmp_path: Path) -> None:
    from sandbox.config.layers import write_override

    write_override(UserOverride(APP.id, grant=frozenset({Capability.GAMEPAD})), tmp_path)
    merged = policy_for(Manifest(app=APP), overrides=tmp_path)
    assert probes_for(asked(merged.policy)) == {Resource.DEVICES}


def test_an_unverified_copy_gets_the_site_denials_of_the_id_it_claims(tmp_path: Path) -> None:
    from sandbox.host.names import unverified_app_id
    from sandbox.policy.plan import GrantState
    from tests.policy.engine_support import x11_host

    (tmp_path / "50-site.toml").write_text(f'version = 1\n[apps."{APP.id}"]\ndeny = ["network"]\n')
    copy = AppInfo(unverified_app_id(APP.id, "sha256:" + "e" * 64), "Game", "1", ("/bin/g",))
    m = Manifest(app=copy, capabilities=Capabilities(network=True))
    plan = plan_for(m, x11_host(), site_policy=tmp_path, overrides=tmp_path / "none")
    (network,) = [s for s in plan.statuses if s.permission is Capability.NETWORK]
    assert network.state is GrantState.DENIED_BY_SITE
    other_id = unverified_app_id("com.example.Other", "sha256:" + "e" * 64)
    stranger = AppInfo(other_id, "O", "1", ("/o",))
    m = Manifest(app=stranger, capabilities=Capabilities(network=True))
    other = plan_for(m, x11_host(), site_policy=tmp_path, overrides=tmp_path / "none")
    assert [s.state for s in other.statuses if s.permission is Capability.NETWORK] == [
        GrantState.GRANTED
    ]
