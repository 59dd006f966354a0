"""HostFacts: the frozen description of a host that the probes produce; pure data, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any


class EngineKind(enum.StrEnum):
    DOCKER = "docker"
    PODMAN = "podman"


class CgroupDriver(enum.StrEnum):
    CGROUPFS = "cgroupfs"
    SYSTEMD = "systemd"


class CgroupLayout(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"
    HYBRID = "hybrid"


class AudioServerKind(enum.StrEnum):
    PULSEAUDIO = "pulseaudio"
    PIPEWIRE = "pipewire"
    OTHER = "other"


@dataclass(frozen=True)
class DockerFacts:
    available: bool
    reason: str | None = None
    endpoint: str | None = None  # e.g. "unix:///var/run/docker.sock"
    source: str | None = None  # how it was chosen: DOCKER_HOST, context NAME, default, podman
    engine: EngineKind | None = None
    version: str | None = None
    api_version: str | None = None
    cgroup_driver: CgroupDriver | None = None
    cgroup_version: int | None = None
    rootless: bool = False
    runtimes: tuple[str, ...] = ()
    security_options: tuple[str, ...] = ()
    cdi_devices: tuple[str, ...] = ()  # CDI device names the engine offers (e.g. nvidia.com/gpu=0)
    cdi_spec_dirs: tuple[str, ...] = ()  # where the engine reads CDI specs (Info.CDISpecDirs)
    # Whether the launcher can fence an app network's bridge from the host's services and from
    # other containers (host/netfilter.py); when not, why not (the review says so).
    network_fenced: bool = False
    network_fence_problem: str | None = None


@dataclass(frozen=True)
class X11Facts:
    available: bool
    reason: str | None = None
    display: str | None = None  # ":99"
    display_number: int | None = None
    socket_path: str | None = None  # "/tmp/.X11-unix/X99"
    xauthority: str | None = None  # the user's Xauthority file, if any
    security_extension: bool = False
    xres_extension: bool = False
    vendor: str | None = None


@dataclass(frozen=True)
class WaylandFacts:
    available: bool
    reason: str | None = None
    display: str | None = None  # "wayland-1"
    socket_path: str | None = None


@dataclass(frozen=True)
class AudioFacts:
    available: bool
    reason: str | None = None
    socket_path: str | None = None
    server: AudioServerKind | None = None
    server_name: str | None = None
    server_version: str | None = None
    default_sink: str | None = None
    default_source: str | None = None


@dataclass(frozen=True)
class DeviceNode:
    node: str  # "/dev/dri/renderD128"
    major: int
    minor: int


@dataclass(frozen=True)
class GpuDevice:
    node: str  # the render node, the one `gpu` always grants
    major: int
    minor: int
    card: DeviceNode | None = None  # the primary (KMS) node
    driver: str | None = None
    vendor_id: str | None = None  # "0x8086"
    vendor: str | None = None  # "Intel", "AMD", "NVIDIA"
    pci_slot: str | None = None


@dataclass(frozen=True)
class NvidiaFacts:
    nodes: tuple[DeviceNode, ...] = ()  # /dev/nvidia0, nvidiactl, nvidia-uvm, nvidia-modeset ...
    driver_version: str | None = None
    # /dev/nvidia-caps/*: MIG capability nodes (cap1 is MIG *configuration*, an admin right).
    # Reported so the review can mention them, never granted by `gpu`.
    caps: tuple[DeviceNode, ...] = ()


@dataclass(frozen=True)
class Webcam:
    node: str  # "/dev/video0"
    major: int
    minor: int
    product: str | None = None
    media: DeviceNode | None = None  # the device's /dev/mediaN, where it has one


@dataclass(frozen=True)
class Gamepad:
    node: str  # "/dev/input/event5"
    major: int
    minor: int
    name: str | None = None
    js: tuple[DeviceNode, ...] = ()  # legacy joystick nodes of the same device


@dataclass(frozen=True)
class DeviceFacts:
    available: bool
    reason: str | None = None
    gpus: tuple[GpuDevice, ...] = ()
    webcams: tuple[Webcam, ...] = ()
    gamepads: tuple[Gamepad, ...] = ()
    nvidia: NvidiaFacts = field(default_factory=NvidiaFacts)
    # False where udevd's properties (ID_INPUT_JOYSTICK, ID_V4L_CAPABILITIES) were not seen:
    # without them no webcam or gamepad can be recognised, so empty lists prove nothing.
    udev_properties: bool = False


@dataclass(frozen=True)
class CgroupMount:
    path: str  # "/sys/fs/cgroup/memory"
    controllers: tuple[str, ...]  # ("memory",); () for the unified (v2) mount
    version: int  # 1 or 2


@dataclass(frozen=True)
class CgroupMembership:
    """One line of /proc/PID/cgroup: hierarchy 0 with no controllers is the unified (v2) one."""

    hierarchy_id: int
    controllers: tuple[str, ...]  # ("cpu", "cpuacct"), ("name=systemd",), () for v2
    path: str  # "/user.slice/..." relative to that hierarchy's root


@dataclass(frozen=True)
class CgroupFacts:
    available: bool
    reason: str | None = None
    layout: CgroupLayout | None = None
    mounts: tuple[CgroupMount, ...] = ()
    controllers: tuple[str, ...] = ()
    can_create_parent: bool = False  # may this user create the sandbox parent cgroup?
    parent_reason: str | None = None
    own: tuple[CgroupMembership, ...] = ()  # where the probing process itself sits


@dataclass(frozen=True)
class UserFacts:
    available: bool
    reason: str | None = None
    uid: int = -1
    gid: int = -1
    name: str | None = None
    home: str | None = None
    runtime_dir: str | None = None  # XDG_RUNTIME_DIR
    data_home: str | None = None  # XDG_DATA_HOME
    config_home: str | None = None  # XDG_CONFIG_HOME
    cache_home: str | None = None  # XDG_CACHE_HOME
    group_ids: tuple[tuple[str, int], ...] = ()  # host gids of render, video, input, audio
    via_sudo: bool = False  # root launched us for this user through sudo (SUDO_UID/SUDO_GID)


@dataclass(frozen=True)
class HostFacts:
    docker: DockerFacts
    x11: X11Facts
    wayland: WaylandFacts
    audio: AudioFacts
    devices: DeviceFacts
    cgroups: CgroupFacts
    user: UserFacts


def to_jsonable(value: Any) -> Any:
    """Turn facts (or any frozen directive) into JSON-ready values; drops `reason` when None."""
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.name == "reason" and item is None:
                continue
            out[f.name] = to_jsonable(item)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value
