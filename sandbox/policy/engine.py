"""engine.plan(): merged policy + HostFacts -> LaunchPlan, pure and fail-closed; no I/O at all."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from sandbox.errors import PolicyError
from sandbox.host import names
from sandbox.policy import gpu_diagnosis
from sandbox.policy.facts import AudioServerKind, CgroupDriver, CgroupLayout, HostFacts
from sandbox.policy.gpu_diagnosis import GpuAccess
from sandbox.policy.layers import CatalogLike, Decision, EffectivePolicy, PolicyEntry
from sandbox.policy.mounts import MountContext, mount_problem
from sandbox.policy.plan import (
    NOBODY_ID,
    CgroupDriverName,
    CgroupParent,
    DeviceCgroupRule,
    DeviceNode,
    EnvVar,
    GrantState,
    GrantStatus,
    HotplugCgroup,
    HotplugRequest,
    HotplugSubsystem,
    Labels,
    LaunchPlan,
    MountKind,
    NetworkMode,
    NvidiaMethod,
    NvidiaRequest,
    PulseProxyRequest,
    ResourceRequest,
    StorageRequest,
    SupplementaryGroup,
    UserSpec,
    WaylandSocketRequest,
    X11CookieRequest,
    baseline_hardening,
)
from sandbox.policy.vocabulary import Capability, Permission, Storage

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

_FORBIDDEN_TARGET_ROOTS = ("/proc", "/sys", "/dev")

ENV_APP_ID = "SANDBOX_APP_ID"

_T = TypeVar("_T")
_IN_PLAY = frozenset({GrantState.GRANTED, GrantState.UNAVAILABLE, GrantState.FALLBACK_UNUSED})


@dataclass(frozen=True)
class _Outcome:
    """What one permission contributes to the plan."""

    state: GrantState
    detail: str = ""
    devices: tuple[DeviceNode, ...] = ()
    rules: tuple[DeviceCgroupRule, ...] = ()
    groups: tuple[SupplementaryGroup, ...] = ()
    requests: tuple[ResourceRequest, ...] = ()


def _unavailable(reason: str) -> _Outcome:
    return _Outcome(GrantState.UNAVAILABLE, reason)


def plan(policy: EffectivePolicy, facts: HostFacts, *, catalog: CatalogLike) -> LaunchPlan:
    """Turn the merged policy into directives for this host; raises PolicyError, never weakens."""
    app_id = names.check_app_id(policy.app.id)
    granted = policy.granted()
    outcomes: dict[Permission, _Outcome] = {}
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
    if gpu_outcome is not None and gpu_outcome.state in _IN_PLAY:
        untrusted_x11_only = Capability.DISPLAY_WAYLAND not in effective and any(
            isinstance(r, X11CookieRequest) and not r.trusted for o in used for r in o.requests
        )
        diagnosis = gpu_diagnosis.diagnose_gpu(facts, untrusted_x11_only=untrusted_x11_only)
        notes += diagnosis.problems
    network = NetworkMode.BRIDGE if Capability.NETWORK in effective else NetworkMode.NONE
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
    _assert_invariants(result, policy, facts)
    return result


def _unique(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def _outcome(
    entry: PolicyEntry, policy: EffectivePolicy, facts: HostFacts, granted: frozenset[Permission]
) -> _Outcome:
    match entry.decision:
        case Decision.NOT_REQUESTED:
            return _Outcome(GrantState.NOT_REQUESTED)
        case Decision.DENIED_BY_SITE:
            return _Outcome(GrantState.DENIED_BY_SITE, "denied by the site policy")
        case Decision.REVOKED_BY_USER:
            return _Outcome(GrantState.REVOKED_BY_USER, "revoked by you")
        case Decision.GRANTED:
            pass
    p = entry.permission
    if isinstance(p, Storage):
        return _storage(p, policy)
    match p:
        case Capability.DISPLAY_WAYLAND:
            return _wayland(facts)
        case Capability.DISPLAY_X11:
            return _x11(entry, facts, granted)
        case Capability.DISPLAY_X11_TRUSTED:
            return _x11_trusted(facts)
        case Capability.AUDIO_PLAYBACK | Capability.AUDIO_RECORD:
            return _audio(p, policy, facts, granted)
        case Capability.GPU:
            return _gpu(facts)
        case Capability.WEBCAM:
            return _webcam(facts)
        case Capability.GAMEPAD:
            return _gamepad(facts)
        case Capability.NETWORK:
            return _Outcome(GrantState.GRANTED, "a network of its own with internet access")
    raise PolicyError(f"{p}: the engine does not know this capability")  # fail closed


def _wayland(facts: HostFacts) -> _Outcome:
    w = facts.wayland
    if not (w.available and w.display and w.socket_path):
        return _unavailable(f"no Wayland compositor ({w.reason or 'not found'})")
    return _Outcome(
        GrantState.GRANTED,
        f"Wayland ({w.display})",
        requests=(WaylandSocketRequest(display=w.display, socket_path=w.socket_path),),
    )


def _wayland_in_use(facts: HostFacts, granted: frozenset[Permission]) -> bool:
    return Capability.DISPLAY_WAYLAND in granted and _wayland(facts).state is GrantState.GRANTED


def _x11_missing(facts: HostFacts) -> str | None:
    x = facts.x11
    if not (x.available and x.display and x.socket_path):
        return f"no X server ({x.reason or 'not found'})"
    return None


def _x11(entry: PolicyEntry, facts: HostFacts, granted: frozenset[Permission]) -> _Outcome:
    if entry.conditional and _wayland_in_use(facts, granted):
        return _Outcome(GrantState.FALLBACK_UNUSED, "Wayland is used instead")
    if Capability.DISPLAY_X11_TRUSTED in granted and _x11_missing(facts) is None:
        return _Outcome(GrantState.GRANTED, f"X11 ({facts.x11.display}) with the trusted cookie")
    missing = _x11_missing(facts)
    if missing:
        return _unavailable(missing)
    x = facts.x11
    if not x.security_extension:
        # never fall back to a trusted cookie: that would silently grant display.x11-trusted
        return _unavailable("the X server lacks the SECURITY extension")
    assert x.display and x.socket_path
    return _Outcome(
        GrantState.GRANTED,
        f"X11 ({x.display}), untrusted: cannot read other windows",
        requests=(X11CookieRequest(trusted=False, display=x.display, socket_path=x.socket_path),),
    )


def _x11_trusted(facts: HostFacts) -> _Outcome:
    missing = _x11_missing(facts)
    if missing:
        return _unavailable(missing)
    x = facts.x11
    assert x.display and x.socket_path
    return _Outcome(
        GrantState.GRANTED,
        f"X11 ({x.display}), trusted: can read other windows and inject keystrokes",
        requests=(X11CookieRequest(trusted=True, display=x.display, socket_path=x.socket_path),),
    )


def _audio(
    p: Capability, policy: EffectivePolicy, facts: HostFacts, granted: frozenset[Permission]
) -> _Outcome:
    a = facts.audio
    if not (a.available and a.socket_path):
        return _unavailable(f"no sound server ({a.reason or 'not found'})")
    if a.server not in (AudioServerKind.PULSEAUDIO, AudioServerKind.PIPEWIRE):
        return _unavailable(f"the sound server ({a.server_name}) does not speak PulseAudio")
    request = PulseProxyRequest(
        app_id=policy.app.id,
        app_name=policy.app.name,
        server_socket=a.socket_path,
        playback=Capability.AUDIO_PLAYBACK in granted,
        record=Capability.AUDIO_RECORD in granted,
    )
    server = a.server_name or str(a.server)
    if p is Capability.AUDIO_RECORD:
        detail = f"records from {a.default_source or 'the default input'} through a private proxy"
    else:
        detail = f"plays through a private proxy to {server}"
    return _Outcome(GrantState.GRANTED, detail, requests=(request,))


def _groups(cap: Capability, facts: HostFacts) -> tuple[SupplementaryGroup, ...]:
    host = dict(facts.user.group_ids) if facts.user.available else {}
    return tuple(
        SupplementaryGroup(name, host[name], cap) for name in GROUPS_FOR[cap] if name in host
    )


def _devices_missing(facts: HostFacts) -> str | None:
    d = facts.devices
    return None if d.available else f"devices could not be listed ({d.reason or 'unknown'})"


def _gpu(facts: HostFacts) -> _Outcome:
    d = facts.devices
    missing = _devices_missing(facts)
    # NVIDIA nodes are found in /dev without udev (seen on an H200 host without pyudev), so a
    # broken udev hides render nodes but not them.
    if missing and not d.nvidia.nodes:
        return _unavailable(missing)
    if not d.gpus and not d.nvidia.nodes:
        return _unavailable("no GPU found on this host")
    nodes = [DeviceNode(g.node, g.major, g.minor, Capability.GPU) for g in d.gpus]
    requests: list[ResourceRequest] = []
    how = ""
    if gpu_diagnosis.nvidia_present(facts):
        # The engine's own NVIDIA support comes first: it also injects the driver's user-space
        # libraries, which plain nodes cannot. MIG capability nodes (nvidia.caps) are never
        # granted either way: cap1 is MIG configuration, an administrator's right.
        match gpu_diagnosis.nvidia_engine_method(facts):
            case GpuAccess.NVIDIA_RUNTIME:
                requests.append(NvidiaRequest(NvidiaMethod.RUNTIME))
                how = " (NVIDIA through the nvidia runtime)"
            case GpuAccess.NVIDIA_CDI:
                cdi = gpu_diagnosis.nvidia_cdi_devices(facts)
                requests.append(NvidiaRequest(NvidiaMethod.CDI, cdi))
                how = " (NVIDIA through CDI)"
            case _:
                nodes += [
                    DeviceNode(n.node, n.major, n.minor, Capability.GPU) for n in d.nvidia.nodes
                ]
                version = d.nvidia.driver_version or "unknown"
                how = f" (NVIDIA device nodes; the image must carry libraries for driver {version})"
    names_ = [f"{g.vendor or g.vendor_id or 'GPU'} at {g.node}" for g in d.gpus]
    if not d.gpus:
        names_ = ["NVIDIA at " + ", ".join(n.node for n in d.nvidia.nodes)]
    return _Outcome(
        GrantState.GRANTED,
        ", ".join(names_) + how,
        devices=tuple(nodes),
        groups=_groups(Capability.GPU, facts),
        requests=tuple(requests),
    )


def _hotplug_cgroup(facts: HostFacts) -> HotplugCgroup:
    """v2 needs the major pre-allowed; v1 (and an unknown engine) gets exact per-node rules."""
    version = facts.docker.cgroup_version
    if version == 2 or (version is None and facts.cgroups.layout is CgroupLayout.V2):
        return HotplugCgroup.MAJOR_PREALLOWED
    return HotplugCgroup.PER_NODE


def _hotplug(
    cap: Capability,
    facts: HostFacts,
    *,
    nodes: list[DeviceNode],
    found: str,
    what: str,
    request: HotplugRequest,
) -> _Outcome:
    """The rule of docs/devices.md: none plugged in is still granted (hotplug), unless no udevd
    is there to tell us about a device being plugged in at all."""
    if not nodes and not facts.devices.udev_properties:
        return _unavailable(
            f"no udev daemon on this host: no {what} can be recognised, now or when plugged in"
        )
    mode = _hotplug_cgroup(facts)
    rules: tuple[DeviceCgroupRule, ...] = ()
    if mode is HotplugCgroup.MAJOR_PREALLOWED:
        (major,) = HOTPLUG_MAJORS[cap]
        rules = (DeviceCgroupRule(major, None, cap),)
    return _Outcome(
        GrantState.GRANTED,
        found or f"none plugged in now; a {what} plugged in while the app runs is added",
        devices=tuple(nodes),
        rules=rules,
        groups=_groups(cap, facts),
        requests=(dataclasses.replace(request, cgroup=mode),),
    )


def _webcam(facts: HostFacts) -> _Outcome:
    missing = _devices_missing(facts)
    if missing:
        return _unavailable(missing)
    nodes: list[DeviceNode] = []
    for cam in facts.devices.webcams:
        nodes.append(DeviceNode(cam.node, cam.major, cam.minor, Capability.WEBCAM))
        if cam.media:
            nodes.append(
                DeviceNode(cam.media.node, cam.media.major, cam.media.minor, Capability.WEBCAM)
            )
    found = ", ".join(f"{c.product or 'camera'} at {c.node}" for c in facts.devices.webcams)
    request = HotplugRequest(Capability.WEBCAM, HotplugSubsystem.VIDEO4LINUX)
    return _hotplug(
        Capability.WEBCAM, facts, nodes=nodes, found=found, what="camera", request=request
    )


def _gamepad(facts: HostFacts) -> _Outcome:
    missing = _devices_missing(facts)
    if missing:
        return _unavailable(missing)
    nodes: list[DeviceNode] = []
    for pad in facts.devices.gamepads:
        nodes.append(DeviceNode(pad.node, pad.major, pad.minor, Capability.GAMEPAD))
        nodes += [DeviceNode(j.node, j.major, j.minor, Capability.GAMEPAD) for j in pad.js]
    found = ", ".join(f"{g.name or 'gamepad'} at {g.node}" for g in facts.devices.gamepads)
    request = HotplugRequest(
        Capability.GAMEPAD, HotplugSubsystem.INPUT, (("ID_INPUT_JOYSTICK", "1"),)
    )
    return _hotplug(
        Capability.GAMEPAD, facts, nodes=nodes, found=found, what="gamepad", request=request
    )


def _storage(p: Storage, policy: EffectivePolicy) -> _Outcome:
    spec = next((s for s in policy.storage if s.name == p.name), None)
    if spec is None:
        return _unavailable("the app declares no path for it")
    _check_target(spec.path, str(p))
    return _Outcome(
        GrantState.GRANTED,
        f"a private folder of this app at {spec.path}",
        requests=(StorageRequest(app_id=policy.app.id, name=p.name, target=spec.path),),
    )


def _check_target(target: str, what: str) -> None:
    if not target.startswith("/") or posixpath.normpath(target) != target or target == "/":
        raise PolicyError(f"{what}: {target!r} is not a normalized absolute path below /")
    if _under(target, _FORBIDDEN_TARGET_ROOTS):
        raise PolicyError(f"{what}: {target!r} would cover {target.split('/')[1]!r} in the app")


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


# --- the final gate -----------------------------------------------------------------------------


def _allowed_nodes(facts: HostFacts) -> dict[Capability, set[tuple[str, int, int]]]:
    d = facts.devices
    allowed: dict[Capability, set[tuple[str, int, int]]] = {
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


def _fail(problem: str) -> PolicyError:
    return PolicyError(f"refusing the launch plan: {problem}")


def _assert_invariants(plan: LaunchPlan, policy: EffectivePolicy, facts: HostFacts) -> None:
    """Fail closed if any directive breaks the baseline or the never-list of docs/policy.md."""
    granted = plan.granted()

    h = plan.hardening
    if dataclasses.replace(h, network=NetworkMode.NONE) != baseline_hardening(h.user):
        raise _fail("the hardening baseline was changed")
    if h.network is NetworkMode.HOST or (
        h.network is not NetworkMode.NONE and Capability.NETWORK not in granted
    ):
        raise _fail(f"network mode {h.network} without the network capability")

    user = facts.user
    # No writable roots: the engine's own mounts are never writable binds (storage is a
    # provider's grant, checked again with the storage dir by runtime.compile()).
    mount_ctx = MountContext(
        home=user.home if user.available else None,
        runtime_dir=user.runtime_dir if user.available else None,
    )
    for m in plan.mounts + h.tmpfs:
        problem = mount_problem(m, mount_ctx)
        if problem is not None:
            raise _fail(f"a {problem}")
        if m.kind is MountKind.BIND:
            # Stricter than the shared list: the plan itself binds nothing from any home.
            src = m.source or "/"
            if _under(src, ("/home", "/root")) or "docker" in src.split("/"):
                raise _fail(f"a bind mount of the host's {src}")

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

    for r in plan.requests:
        _check_request(r, granted, facts)

    statuses = [s.permission for s in plan.statuses]
    if len(set(statuses)) != len(statuses) or set(statuses) != {
        e.permission for e in policy.entries
    }:
        raise _fail("statuses do not list every permission of the policy exactly once")
    for e in policy.entries:
        s = plan.status(e.permission)
        assert s is not None
        if (s.state in _IN_PLAY) != (e.decision is Decision.GRANTED):
            raise _fail(f"{e.permission} is {s.state} against the policy ({e.decision})")


def _check_request(r: ResourceRequest, granted: frozenset[Permission], facts: HostFacts) -> None:
    need: Permission
    match r:
        case X11CookieRequest(trusted=True):
            need = Capability.DISPLAY_X11_TRUSTED
        case X11CookieRequest(trusted=False):
            need = Capability.DISPLAY_X11
            if not facts.x11.security_extension:
                raise _fail("an untrusted X11 cookie without the SECURITY extension")
        case WaylandSocketRequest():
            need = Capability.DISPLAY_WAYLAND
        case PulseProxyRequest():
            if r.record and Capability.AUDIO_RECORD not in granted:
                raise _fail("audio recording without audio.record")
            if r.playback and Capability.AUDIO_PLAYBACK not in granted:
                raise _fail("audio playback without audio.playback")
            return
        case StorageRequest():
            need = Storage(r.name)
            _check_target(r.target, str(need))
        case NvidiaRequest():
            need = Capability.GPU
        case HotplugRequest():
            need = r.capability
    if need not in granted:
        raise _fail(f"a {type(r).__name__} without {need}")
