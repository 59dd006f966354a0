"""The fail-closed gate every LaunchPlan passes: baseline and never-list; pure, it only raises."""

from __future__ import annotations

import dataclasses

from sandbox.errors import PolicyError
from sandbox.policy.device_grants import GROUPS_FOR, HOTPLUG_MAJORS
from sandbox.policy.facts import HostFacts
from sandbox.policy.grants import check_target
from sandbox.policy.layers import Decision, EffectivePolicy
from sandbox.policy.mounts import MountContext, at_or_below, mount_problem
from sandbox.policy.plan import (
    GrantState,
    HotplugRequest,
    LaunchPlan,
    Mount,
    MountKind,
    NetworkMode,
    NvidiaRequest,
    PulseProxyRequest,
    ResourceRequest,
    StorageRequest,
    WaylandSocketRequest,
    X11CookieRequest,
    baseline_hardening,
)
from sandbox.policy.vocabulary import Capability, Permission, Storage

# The states a GRANTED decision may end in; every other decision must end outside them.
IN_PLAY = frozenset({GrantState.GRANTED, GrantState.UNAVAILABLE, GrantState.FALLBACK_UNUSED})

_Node = tuple[str, int, int]


def _fail(problem: str) -> PolicyError:
    return PolicyError(f"refusing the launch plan: {problem}")


def assert_invariants(plan: LaunchPlan, policy: EffectivePolicy, facts: HostFacts) -> None:
    """Fail closed if any directive breaks the baseline or the never-list of docs/policy.md."""
    granted = plan.granted()
    _check_hardening(plan, granted)
    _check_mounts(plan, facts)
    _check_devices(plan, granted, facts)
    for r in plan.requests:
        _check_request(r, granted, facts)
    _check_statuses(plan, policy)


def _check_hardening(plan: LaunchPlan, granted: frozenset[Permission]) -> None:
    h = plan.hardening
    if dataclasses.replace(h, network=NetworkMode.NONE) != baseline_hardening(h.user):
        raise _fail("the hardening baseline was changed")
    if h.network is NetworkMode.HOST or (
        h.network is not NetworkMode.NONE and Capability.NETWORK not in granted
    ):
        raise _fail(f"network mode {h.network} without the network capability")


def _check_mounts(plan: LaunchPlan, facts: HostFacts) -> None:
    user = facts.user
    # No writable roots: the engine's own mounts are never writable binds (storage is a
    # provider's grant, checked again with the storage dir by runtime.compile()).
    mount_ctx = MountContext(
        home=user.home if user.available else None,
        runtime_dir=user.runtime_dir if user.available else None,
    )
    for m in plan.mounts + plan.hardening.tmpfs:
        problem = mount_problem(m, mount_ctx)
        if problem is not None:
            raise _fail(f"a {problem}")
        _check_plan_bind(m)


def _check_plan_bind(m: Mount) -> None:
    """Stricter than the shared list: the plan itself binds nothing from any home."""
    if m.kind is not MountKind.BIND:
        return
    src = m.source or "/"
    if any(at_or_below(src, root) for root in ("/home", "/root")) or "docker" in src.split("/"):
        raise _fail(f"a bind mount of the host's {src}")


def _allowed_nodes(facts: HostFacts) -> dict[Capability, set[_Node]]:
    d = facts.devices
    allowed: dict[Capability, set[_Node]] = {
        Capability.GPU: {(g.node, g.major, g.minor) for g in d.gpus}
        | {(n.node, n.major, n.minor) for n in d.nvidia.nodes},
        Capability.WEBCAM: set(),
        Capability.GAMEPAD: set(),
    }
    for cam in d.webcams:
        allowed[Capability.WEBCAM].add((cam.node, cam.major, cam.minor))
        if cam.media:
            allowed[Capability.WEBCAM].add((cam.media.node, cam.media.major, cam.media.minor))
    for pad in d.gamepads:
        allowed[Capability.GAMEPAD].add((pad.node, pad.major, pad.minor))
        allowed[Capability.GAMEPAD] |= {(j.node, j.major, j.minor) for j in pad.js}
    return allowed


def _check_devices(plan: LaunchPlan, granted: frozenset[Permission], facts: HostFacts) -> None:
    allowed = _allowed_nodes(facts)
    for dev in plan.devices:
        if dev.capability not in granted:
            raise _fail(f"device {dev.path} for {dev.capability}, which is not granted")
        if (dev.path, dev.major, dev.minor) not in allowed.get(dev.capability, set()):
            raise _fail(f"device {dev.path} is not a {dev.capability} node of this host")
        if "m" in dev.permissions:
            raise _fail(f"device {dev.path} with mknod permission")
    for rule in plan.device_cgroup_rules:
        if rule.capability not in granted:
            raise _fail(f"cgroup rule {rule} for {rule.capability}, which is not granted")
        if rule.major not in HOTPLUG_MAJORS.get(rule.capability, frozenset()) or (
            "m" in rule.permissions
        ):
            raise _fail(f"cgroup rule {rule} is not one {rule.capability} maps to")
    for g in plan.groups:
        if g.capability not in granted or g.name not in GROUPS_FOR.get(g.capability, ()):
            raise _fail(f"supplementary group {g.name} for {g.capability}")


def _needed_by(r: ResourceRequest, facts: HostFacts) -> Permission | None:
    """The permission a request needs; None for the audio proxy, checked stream by stream."""
    match r:
        case X11CookieRequest(trusted=True):
            return Capability.DISPLAY_X11_TRUSTED
        case X11CookieRequest():  # untrusted
            if not facts.x11.security_extension:
                raise _fail("an untrusted X11 cookie without the SECURITY extension")
            return Capability.DISPLAY_X11
        case WaylandSocketRequest():
            return Capability.DISPLAY_WAYLAND
        case PulseProxyRequest():
            return None
        case StorageRequest():
            need = Storage(r.name)
            check_target(r.target, str(need))
            return need
        case NvidiaRequest():
            return Capability.GPU
        case HotplugRequest():
            return r.capability


def _check_request(r: ResourceRequest, granted: frozenset[Permission], facts: HostFacts) -> None:
    if isinstance(r, PulseProxyRequest):
        if r.record and Capability.AUDIO_RECORD not in granted:
            raise _fail("audio recording without audio.record")
        if r.playback and Capability.AUDIO_PLAYBACK not in granted:
            raise _fail("audio playback without audio.playback")
    need = _needed_by(r, facts)
    if need is not None and need not in granted:
        raise _fail(f"a {type(r).__name__} without {need}")


def _check_statuses(plan: LaunchPlan, policy: EffectivePolicy) -> None:
    statuses = [s.permission for s in plan.statuses]
    if len(set(statuses)) != len(statuses) or set(statuses) != {
        e.permission for e in policy.entries
    }:
        raise _fail("statuses do not list every permission of the policy exactly once")
    for e in policy.entries:
        s = plan.status(e.permission)
        assert s is not None
        if (s.state in IN_PLAY) != (e.decision is Decision.GRANTED):
            raise _fail(f"{e.permission} is {s.state} against the policy ({e.decision})")
