"""ContainerSpec: the typed, frozen container description compile() makes; pure data, no docker."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.policy.plan import (
    DeviceCgroupRule,
    DeviceNode,
    EnvVar,
    Mount,
    NetworkMode,
    SeccompProfile,
)


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the engine is told about one instance; container_body maps it to the Engine API.

    Fields mirror the plan's directives one to one so a reviewer can compare them; nothing here
    is free-form (no kwargs dicts, no raw docker option strings).
    """

    image: str
    command: tuple[str, ...]
    uid: int
    gid: int
    group_ids: tuple[int, ...]
    env: tuple[EnvVar, ...]
    mounts: tuple[Mount, ...]  # binds and tmpfs, in the order they were granted
    devices: tuple[DeviceNode, ...]
    device_cgroup_rules: tuple[DeviceCgroupRule, ...]
    labels: tuple[tuple[str, str], ...]
    cgroup_parent: str
    memory_bytes: int
    nano_cpus: int
    pids_limit: int
    network: NetworkMode = NetworkMode.NONE
    network_name: str | None = None  # the app's own engine network, with NetworkMode.APP
    hostname: str | None = None
    read_only_root: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    seccomp: SeccompProfile = SeccompProfile.DEFAULT
    private_ipc: bool = True
    private_pid: bool = True
    nvidia_runtime: bool = False
    cdi_devices: tuple[str, ...] = ()
    tty: bool = False
    stdin_open: bool = False
    name: str | None = None
    # What the image's config would otherwise supply (docs/runtime.md "Image config"): the
    # image's VOLUMEs come masked in `mounts`; entrypoint, healthcheck and user never come.
    working_dir: str = "/"
    stop_signal: str = "SIGTERM"

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)
