"""ContainerSpec → the Engine API create body, every hardening field explicit; pure, no I/O."""

from __future__ import annotations

from typing import Any

from sandbox.errors import LaunchError
from sandbox.policy.plan import Mount, MountKind, NetworkMode, SeccompProfile
from sandbox.runtime.spec import ContainerSpec


def _mount(m: Mount) -> dict[str, Any]:
    if m.kind is MountKind.TMPFS:
        tmpfs: dict[str, Any] = {"Mode": 0o1777}
        if m.size_bytes is not None:
            tmpfs["SizeBytes"] = m.size_bytes
        return {"Type": "tmpfs", "Target": m.target, "TmpfsOptions": tmpfs}
    return {
        "Type": "bind",
        "Source": m.source,
        "Target": m.target,
        "ReadOnly": m.read_only,
        "BindOptions": {"Propagation": "rprivate"},
    }


def _network_mode(spec: ContainerSpec) -> str:
    """ "none", or the app's own network by name (never the default bridge, never the host's)."""
    if spec.network is NetworkMode.NONE:
        return "none"
    if spec.network is NetworkMode.APP and spec.network_name:
        return spec.network_name
    raise LaunchError(f"network mode {spec.network} is never used")


def _host_config(spec: ContainerSpec) -> dict[str, Any]:
    security = ["no-new-privileges"] if spec.no_new_privileges else []
    if spec.seccomp is not SeccompProfile.DEFAULT:
        raise LaunchError(f"seccomp profile {spec.seccomp} is never used")
    host: dict[str, Any] = {
        "NetworkMode": _network_mode(spec),
        "ReadonlyRootfs": spec.read_only_root,
        "CapDrop": list(spec.cap_drop),
        "CapAdd": list(spec.cap_add),
        "SecurityOpt": security,
        "Privileged": False,
        "IpcMode": "private" if spec.private_ipc else "shareable",
        "CgroupParent": spec.cgroup_parent,
        "Memory": spec.memory_bytes,
        "MemorySwap": spec.memory_bytes,
        "NanoCpus": spec.nano_cpus,
        "PidsLimit": spec.pids_limit,
        "Mounts": [_mount(m) for m in spec.mounts],
        "Devices": [
            {"PathOnHost": d.path, "PathInContainer": d.path, "CgroupPermissions": d.permissions}
            for d in spec.devices
        ],
        "DeviceCgroupRules": [str(r) for r in spec.device_cgroup_rules],
        "GroupAdd": [str(g) for g in spec.group_ids],
        "AutoRemove": False,  # the session removes it after reading the exit code
    }
    if spec.nvidia_runtime:
        host["Runtime"] = "nvidia"
    if spec.cdi_devices:
        host["DeviceRequests"] = [{"Driver": "cdi", "DeviceIDs": list(spec.cdi_devices)}]
    return host


def create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The Engine API create body for a spec; every hardening field is explicit."""
    return {
        "Image": spec.image,
        "Cmd": list(spec.command),
        "User": spec.user,
        "Env": [f"{v.name}={v.value}" for v in spec.env],
        "Labels": dict(spec.labels),
        "Hostname": spec.hostname or "",
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "StdinOnce": spec.stdin_open,
        "AttachStdin": spec.stdin_open,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": _host_config(spec),
    }
