"""LaunchPlan: the typed, frozen directives engine.plan() produces; pure data, no I/O, no docker."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sandbox.policy.manifest import AppInfo
from sandbox.policy.vocabulary import Capability, Permission, Risk

GIB = 1024**3

# Built-in whole-app limits when neither the manifest nor the site says otherwise: enough for a
# typical game or editor, small enough that a runaway app cannot take the desktop down with it.
DEFAULT_MEMORY_BYTES = 2 * GIB
DEFAULT_CPUS = 2.0
DEFAULT_PIDS = 1024

NOBODY_ID = 65534  # the uid/gid a plan falls back to when the invoking user is unknown


class MountKind(enum.StrEnum):
    BIND = "bind"
    TMPFS = "tmpfs"


@dataclass(frozen=True)
class Mount:
    target: str  # absolute path inside the container
    kind: MountKind
    source: str | None = None  # host path for BIND; None for TMPFS
    read_only: bool = True
    size_bytes: int | None = None  # TMPFS only


@dataclass(frozen=True)
class DeviceNode:
    """A host device node passed into the container; `capability` is why it is there."""

    path: str
    major: int
    minor: int
    capability: Capability
    permissions: str = "rw"  # never "m": the container may not mknod


@dataclass(frozen=True)
class DeviceCgroupRule:
    """`c MAJOR:MINOR rw`, so nodes the hotplug provider adds later are usable; None = any minor."""

    major: int
    minor: int | None
    capability: Capability
    permissions: str = "rw"
    kind: str = "c"

    def __str__(self) -> str:
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.kind} {self.major}:{minor} {self.permissions}"


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str


@dataclass(frozen=True)
class SupplementaryGroup:
    """A host group the app's user joins inside the container (render, video, input)."""

    name: str
    gid: int
    capability: Capability


# --- requests the providers turn into grants (and tear down) ------------------------------------


@dataclass(frozen=True)
class X11CookieRequest:
    trusted: bool  # only display.x11-trusted may set this; otherwise a SECURITY untrusted cookie
    display: str  # ":0", as DISPLAY names it
    socket_path: str  # host socket, "/tmp/.X11-unix/X0"; the provider mounts exactly this one
    xauthority: str | None = None  # the user's Xauthority: the cookie that opens the display


@dataclass(frozen=True)
class WaylandSocketRequest:
    display: str  # "wayland-0"
    socket_path: str  # host socket; the provider mounts a per-app dir holding it, not the file


@dataclass(frozen=True)
class PulseProxyRequest:
    app_id: str
    app_name: str
    server_socket: str  # the host server the proxy forwards to
    playback: bool
    record: bool  # only with audio.record; the proxy refuses record streams otherwise


@dataclass(frozen=True)
class StorageRequest:
    app_id: str
    name: str  # storage.<name>
    target: str  # absolute path inside the container


class NvidiaMethod(enum.StrEnum):
    RUNTIME = "runtime"  # the engine's `nvidia` runtime injects nodes and driver libraries
    CDI = "cdi"  # a CDI device request (nvidia.com/gpu=...)


@dataclass(frozen=True)
class NvidiaRequest:
    method: NvidiaMethod
    cdi_devices: tuple[str, ...] = ()


class HotplugSubsystem(enum.StrEnum):
    VIDEO4LINUX = "video4linux"
    INPUT = "input"


class HotplugCgroup(enum.StrEnum):
    """How a hotplugged node becomes usable in the container's device cgroup."""

    # cgroup v1: the provider writes `c MAJ:MIN rw` to the container's devices.allow (and
    # devices.deny on unplug), so devices.list shows exactly the granted nodes at any time.
    PER_NODE = "per-node"
    # cgroup v2: the engine's BPF device filter is fixed at creation and extra programs can only
    # deny, so the plan pre-allows the major (`c 81:* rw`); the provider only creates the node.
    MAJOR_PREALLOWED = "major-preallowed"


@dataclass(frozen=True)
class HotplugRequest:
    """Watch udev while the app runs and add (or remove) matching nodes."""

    capability: Capability
    subsystem: HotplugSubsystem
    # udev properties a device must carry; e.g. ID_INPUT_JOYSTICK=1 keeps keyboards out
    match: tuple[tuple[str, str], ...] = ()
    cgroup: HotplugCgroup = HotplugCgroup.PER_NODE


ResourceRequest = (
    X11CookieRequest
    | WaylandSocketRequest
    | PulseProxyRequest
    | StorageRequest
    | NvidiaRequest
    | HotplugRequest
)


# --- limits and the hardening baseline ----------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Whole-app limits, applied on the app's cgroup parent and on each container."""

    memory_bytes: int = DEFAULT_MEMORY_BYTES
    cpus: float = DEFAULT_CPUS
    pids: int = DEFAULT_PIDS


class NamespaceMode(enum.StrEnum):
    PRIVATE = "private"
    HOST = "host"  # exists only so a plan built by hand can be rejected; the engine never sets it


class NetworkMode(enum.StrEnum):
    NONE = "none"
    APP = "app"  # only with `network`: the app's own engine network (runtime/app_network.py)
    HOST = "host"  # never; see NamespaceMode.HOST


class SeccompProfile(enum.StrEnum):
    DEFAULT = "default"
    UNCONFINED = "unconfined"  # never


@dataclass(frozen=True)
class UserSpec:
    uid: int
    gid: int


@dataclass(frozen=True)
class Hardening:
    """The always-on baseline of DESIGN.md; only `network` varies, and only with `network`."""

    user: UserSpec
    network: NetworkMode = NetworkMode.NONE
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    read_only_root: bool = True
    privileged: bool = False
    tmpfs: tuple[Mount, ...] = (
        Mount(target="/tmp", kind=MountKind.TMPFS, read_only=False, size_bytes=256 * 1024**2),
    )
    ipc: NamespaceMode = NamespaceMode.PRIVATE
    pid: NamespaceMode = NamespaceMode.PRIVATE
    uts: NamespaceMode = NamespaceMode.PRIVATE
    seccomp: SeccompProfile = SeccompProfile.DEFAULT


def baseline_hardening(user: UserSpec) -> Hardening:
    return Hardening(user=user)


# --- what happened to each permission -----------------------------------------------------------


class GrantState(enum.StrEnum):
    GRANTED = "granted"
    UNAVAILABLE = "unavailable"  # granted, but this host cannot provide it; `detail` says why
    FALLBACK_UNUSED = "fallback-unused"  # a conditional grant whose preferred choice is in use
    DENIED_BY_SITE = "denied-by-site"
    REVOKED_BY_USER = "revoked-by-user"
    NOT_REQUESTED = "not-requested"


@dataclass(frozen=True)
class GrantStatus:
    permission: Permission
    state: GrantState
    title: str
    risk: Risk
    detail: str = ""  # plain words: what it means on this host, or why it is not there
    conditional: bool = False  # requested only as a fallback (display.x11 of wayland-or-x11)
    user_granted: bool = False  # granted by the user beyond what the manifest asks
    implied_by: Permission | None = None  # comes with this bigger grant


# --- labels and cgroup --------------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    app_id: str
    app_version: str


class CgroupDriverName(enum.StrEnum):
    CGROUPFS = "cgroupfs"
    SYSTEMD = "systemd"


@dataclass(frozen=True)
class CgroupParent:
    driver: CgroupDriverName
    path: str  # "/sandbox/<app-id>" (cgroupfs) or "sandbox-<escaped>.slice" (systemd)


@dataclass(frozen=True)
class LaunchPlan:
    app: AppInfo
    statuses: tuple[GrantStatus, ...]
    hardening: Hardening
    limits: Limits
    labels: Labels
    cgroup_parent: CgroupParent
    mounts: tuple[Mount, ...] = ()
    devices: tuple[DeviceNode, ...] = ()
    device_cgroup_rules: tuple[DeviceCgroupRule, ...] = ()
    groups: tuple[SupplementaryGroup, ...] = ()
    env: tuple[EnvVar, ...] = ()
    requests: tuple[ResourceRequest, ...] = ()
    notes: tuple[str, ...] = field(default=())  # plan-wide facts worth telling the user

    def status(self, permission: Permission) -> GrantStatus | None:
        for s in self.statuses:
            if s.permission == permission:
                return s
        return None

    def granted(self) -> frozenset[Permission]:
        return frozenset(s.permission for s in self.statuses if s.state is GrantState.GRANTED)

    def xauthority(self) -> str | None:
        """The user's Xauthority of this plan's X11 request: gc revokes the cookie with it."""
        return next((r.xauthority for r in self.requests if isinstance(r, X11CookieRequest)), None)
