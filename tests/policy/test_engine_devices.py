"""Webcam and gamepad grants: the hotplug rule (none plugged in vs no udevd) and cgroup modes."""

from __future__ import annotations

import dataclasses

import pytest
from engine_support import bare_host, desktop, make_plan, manifest

from sandbox.policy.facts import CgroupFacts, CgroupLayout, DeviceFacts, DockerFacts, HostFacts
from sandbox.policy.manifest import Manifest
from sandbox.policy.plan import GrantState, HotplugCgroup, HotplugRequest
from sandbox.policy.vocabulary import Capability

CAPS = [Capability.WEBCAM, Capability.GAMEPAD]


def _ask(cap: Capability) -> Manifest:
    return manifest(webcam=cap is Capability.WEBCAM, gamepad=cap is Capability.GAMEPAD)


def _with_udevd(facts: HostFacts, *, udevd: bool) -> HostFacts:
    return dataclasses.replace(facts, devices=DeviceFacts(True, udev_properties=udevd))


@pytest.mark.parametrize("cap", CAPS)
def test_none_plugged_in_is_granted_with_hotplug(cap: Capability) -> None:
    plan = make_plan(_ask(cap), _with_udevd(bare_host(), udevd=True))
    status = plan.status(cap)
    assert status is not None and status.state is GrantState.GRANTED
    assert "none plugged in now" in status.detail
    assert plan.devices == ()
    assert [r.capability for r in plan.requests if isinstance(r, HotplugRequest)] == [cap]


@pytest.mark.parametrize("cap", CAPS)
def test_no_udevd_and_none_found_is_unavailable(cap: Capability) -> None:
    plan = make_plan(_ask(cap), _with_udevd(bare_host(), udevd=False))
    status = plan.status(cap)
    assert status is not None and status.state is GrantState.UNAVAILABLE
    assert "no udev daemon" in status.detail
    assert (plan.devices, plan.device_cgroup_rules, plan.groups, plan.requests) == ((), (), (), ())


@pytest.mark.parametrize(
    ("docker_v", "layout", "mode"),
    [
        (1, CgroupLayout.HYBRID, HotplugCgroup.PER_NODE),
        (2, CgroupLayout.V2, HotplugCgroup.MAJOR_PREALLOWED),
        (None, CgroupLayout.V2, HotplugCgroup.MAJOR_PREALLOWED),
        (None, CgroupLayout.V1, HotplugCgroup.PER_NODE),
    ],
)
def test_gamepad_cgroup_mode(
    docker_v: int | None, layout: CgroupLayout, mode: HotplugCgroup
) -> None:
    facts = dataclasses.replace(
        desktop(),
        docker=DockerFacts(True, cgroup_version=docker_v),
        cgroups=CgroupFacts(True, layout=layout),
    )
    plan = make_plan(manifest(gamepad=True), facts)
    (request,) = [r for r in plan.requests if isinstance(r, HotplugRequest)]
    assert request.cgroup is mode
    expected = ["c 13:* rw"] if mode is HotplugCgroup.MAJOR_PREALLOWED else []
    assert [str(r) for r in plan.device_cgroup_rules] == expected
    # present nodes are always passed as devices: the engine adds their exact cgroup rules
    assert {d.path for d in plan.devices} == {"/dev/input/event5", "/dev/input/js0"}


def test_all_three_never_cross() -> None:
    plan = make_plan(manifest(gpu=True, webcam=True, gamepad=True), desktop())
    by_cap = {(d.path, d.capability) for d in plan.devices}
    assert by_cap == {
        ("/dev/dri/renderD128", Capability.GPU),
        ("/dev/video0", Capability.WEBCAM),
        ("/dev/media0", Capability.WEBCAM),
        ("/dev/input/event5", Capability.GAMEPAD),
        ("/dev/input/js0", Capability.GAMEPAD),
    }
    assert {(g.name, g.capability) for g in plan.groups} == {
        ("render", Capability.GPU),
        ("video", Capability.GPU),
        ("video", Capability.WEBCAM),
        ("input", Capability.GAMEPAD),
    }
