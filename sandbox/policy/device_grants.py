"""Per-permission rules for gpu, webcam and gamepad: nodes, groups, hotplug; pure, no I/O."""

from __future__ import annotations

import dataclasses

from sandbox.policy import gpu_diagnosis
from sandbox.policy.facts import CgroupLayout, HostFacts
from sandbox.policy.gpu_diagnosis import GpuAccess
from sandbox.policy.outcome import Ask, Outcome, unavailable
from sandbox.policy.plan import (
    DeviceCgroupRule,
    DeviceNode,
    GrantState,
    HotplugCgroup,
    HotplugRequest,
    HotplugSubsystem,
    NvidiaMethod,
    NvidiaRequest,
    ResourceRequest,
    SupplementaryGroup,
)
from sandbox.policy.vocabulary import Capability

V4L_MAJOR = 81
INPUT_MAJOR = 13

# Host groups each capability may add; nothing else is ever added (never docker, disk, root).
GROUPS_FOR: dict[Capability, tuple[str, ...]] = {
    Capability.GPU: ("render", "video"),
    Capability.WEBCAM: ("video",),
    Capability.GAMEPAD: ("input",),
}

# Blanket cgroup rules exist only for hotplug: with cgroup v2 the device filter is fixed when the
# container is created. The container cannot mknod (no CAP_MKNOD), so only nodes the hotplug
# provider adds (joysticks only, by udev property) are reachable under these majors.
HOTPLUG_MAJORS: dict[Capability, frozenset[int]] = {
    Capability.WEBCAM: frozenset({V4L_MAJOR}),
    Capability.GAMEPAD: frozenset({INPUT_MAJOR}),
}


def _groups(cap: Capability, facts: HostFacts) -> tuple[SupplementaryGroup, ...]:
    host = dict(facts.user.group_ids) if facts.user.available else {}
    return tuple(
        SupplementaryGroup(name, host[name], cap) for name in GROUPS_FOR[cap] if name in host
    )


def _devices_missing(facts: HostFacts) -> str | None:
    d = facts.devices
    return None if d.available else f"devices could not be listed ({d.reason or 'unknown'})"


# --- gpu ----------------------------------------------------------------------------------------


def _nvidia_access(facts: HostFacts) -> tuple[list[DeviceNode], list[ResourceRequest], str]:
    """The engine's own NVIDIA support comes first: it also injects the driver's user-space
    libraries, which plain nodes cannot. MIG capability nodes (nvidia.caps) are never granted
    either way: cap1 is MIG configuration, an administrator's right."""
    match gpu_diagnosis.nvidia_engine_method(facts):
        case GpuAccess.NVIDIA_RUNTIME:
            return [], [NvidiaRequest(NvidiaMethod.RUNTIME)], " (NVIDIA through the nvidia runtime)"
        case GpuAccess.NVIDIA_CDI:
            cdi = gpu_diagnosis.nvidia_cdi_devices(facts)
            return [], [NvidiaRequest(NvidiaMethod.CDI, cdi)], " (NVIDIA through CDI)"
        case _:
            nvidia = facts.devices.nvidia
            nodes = [DeviceNode(n.node, n.major, n.minor, Capability.GPU) for n in nvidia.nodes]
            version = nvidia.driver_version or "unknown"
            how = f" (NVIDIA device nodes; the image must carry libraries for driver {version})"
            return nodes, [], how


def gpu(ask: Ask) -> Outcome:
    facts = ask.facts
    d = facts.devices
    missing = _devices_missing(facts)
    # NVIDIA nodes are found in /dev without udev (seen on an H200 host without pyudev), so a
    # broken udev hides render nodes but not them.
    if missing and not d.nvidia.nodes:
        return unavailable(missing)
    if not d.gpus and not d.nvidia.nodes:
        return unavailable("no GPU found on this host")
    nodes = [DeviceNode(g.node, g.major, g.minor, Capability.GPU) for g in d.gpus]
    requests: list[ResourceRequest] = []
    how = ""
    if gpu_diagnosis.nvidia_present(facts):
        extra, requests, how = _nvidia_access(facts)
        nodes += extra
    names_ = [f"{g.vendor or g.vendor_id or 'GPU'} at {g.node}" for g in d.gpus]
    if not d.gpus:
        names_ = ["NVIDIA at " + ", ".join(n.node for n in d.nvidia.nodes)]
    return Outcome(
        GrantState.GRANTED,
        ", ".join(names_) + how,
        devices=tuple(nodes),
        groups=_groups(Capability.GPU, facts),
        requests=tuple(requests),
    )


# --- hotplugged devices -------------------------------------------------------------------------


def _hotplug_cgroup(facts: HostFacts) -> HotplugCgroup:
    """v2 needs the major pre-allowed; v1 (and an unknown engine) gets exact per-node rules."""
    version = facts.docker.cgroup_version
    if version == 2 or (version is None and facts.cgroups.layout is CgroupLayout.V2):
        return HotplugCgroup.MAJOR_PREALLOWED
    return HotplugCgroup.PER_NODE


def _hotplug(
    facts: HostFacts, *, nodes: list[DeviceNode], found: str, what: str, request: HotplugRequest
) -> Outcome:
    """The rule of docs/devices.md: none plugged in is still granted (hotplug), unless no udevd
    is there to tell us about a device being plugged in at all."""
    missing = _devices_missing(facts)
    if missing:
        return unavailable(missing)
    if not nodes and not facts.devices.udev_properties:
        return unavailable(
            f"no udev daemon on this host: no {what} can be recognised, now or when plugged in"
        )
    cap = request.capability
    mode = _hotplug_cgroup(facts)
    rules: tuple[DeviceCgroupRule, ...] = ()
    if mode is HotplugCgroup.MAJOR_PREALLOWED:
        (major,) = HOTPLUG_MAJORS[cap]
        rules = (DeviceCgroupRule(major, None, cap),)
    return Outcome(
        GrantState.GRANTED,
        found or f"none plugged in now; a {what} plugged in while the app runs is added",
        devices=tuple(nodes),
        rules=rules,
        groups=_groups(cap, facts),
        requests=(dataclasses.replace(request, cgroup=mode),),
    )


def webcam(ask: Ask) -> Outcome:
    facts = ask.facts
    nodes: list[DeviceNode] = []
    for cam in facts.devices.webcams:
        nodes.append(DeviceNode(cam.node, cam.major, cam.minor, Capability.WEBCAM))
        if cam.media:
            nodes.append(
                DeviceNode(cam.media.node, cam.media.major, cam.media.minor, Capability.WEBCAM)
            )
    found = ", ".join(f"{c.product or 'camera'} at {c.node}" for c in facts.devices.webcams)
    request = HotplugRequest(Capability.WEBCAM, HotplugSubsystem.VIDEO4LINUX)
    return _hotplug(facts, nodes=nodes, found=found, what="camera", request=request)


def gamepad(ask: Ask) -> Outcome:
    facts = ask.facts
    nodes: list[DeviceNode] = []
    for pad in facts.devices.gamepads:
        nodes.append(DeviceNode(pad.node, pad.major, pad.minor, Capability.GAMEPAD))
        nodes += [DeviceNode(j.node, j.major, j.minor, Capability.GAMEPAD) for j in pad.js]
    found = ", ".join(f"{g.name or 'gamepad'} at {g.node}" for g in facts.devices.gamepads)
    request = HotplugRequest(
        Capability.GAMEPAD, HotplugSubsystem.INPUT, (("ID_INPUT_JOYSTICK", "1"),)
    )
    return _hotplug(facts, nodes=nodes, found=found, what="gamepad", request=request)
