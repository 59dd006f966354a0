"""ContainerSpec → the Engine API create body, every hardening field explicit; pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.errors import LaunchError
from sandbox.policy.plan import Mount, MountKind, NetworkMode, SeccompProfile
from sandbox.runtime.spec import ContainerSpec

# Every field of an image's config (the Config of the engines' image inspect: Docker's container
# config, a superset of the OCI image config) and how a container of ours gets it: `set` fields
# the body sets itself, so the image's value never applies; the others cannot act at run time.
# tests/runtime/test_compile.py fails for a field missing here or a `set` field the body lacks.
IMAGE_CONFIG_FIELDS: Mapping[str, str] = {
    "Entrypoint": "set: cleared, to the one value both engines read as none",
    "Cmd": "set: the manifest's command and the launch's args, as given",
    "User": "set: the plan's uid:gid",
    "Env": "set: the sandbox's variables win over the image's of the same name",
    "Healthcheck": "set: NONE, no healthcheck runs",
    "WorkingDir": "set: the image's WORKDIR when absolute, else /",
    "StopSignal": "set: SIGTERM, as docs/runtime.md step 6 says",
    "Labels": "set: the sandbox's labels win over the image's of the same key",
    "Hostname": "set: from the app id or the X11 grant",
    "Domainname": "set: empty",
    "Tty": "set",
    "OpenStdin": "set",
    "StdinOnce": "set",
    "AttachStdin": "set",
    "AttachStdout": "set",
    "AttachStderr": "set",
    "Image": "set: the image itself",
    "Volumes": "masked: an empty read-only tmpfs over each (compile.volume_masks)",
    "ExposedPorts": "inert: nothing is published (no PortBindings, no PublishAllPorts)",
    "OnBuild": "build only: triggers for an image built FROM this one",
    "Shell": "build only: the shell of RUN/CMD/ENTRYPOINT in shell form",
    "ArgsEscaped": "Windows only",
    "NetworkDisabled": "not taken from an image (HostConfig.NetworkMode decides)",
    "MacAddress": "not taken from an image",
    "StopTimeout": "not taken from an image (stop passes its own timeout)",
}
# A mask is a tmpfs the app may not write: root's, mode 0555, mounted read-only.
_MASK_MODE = 0o555


def _mount(m: Mount) -> dict[str, Any]:
    if m.kind is MountKind.TMPFS:
        tmpfs: dict[str, Any] = {"Mode": _MASK_MODE if m.read_only else 0o1777}
        if m.size_bytes is not None:
            tmpfs["SizeBytes"] = m.size_bytes
        return {"Type": "tmpfs", "Target": m.target, "ReadOnly": m.read_only, "TmpfsOptions": tmpfs}
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
        # The image's config supplies none of these (IMAGE_CONFIG_FIELDS above).
        "Entrypoint": [""],
        "Cmd": list(spec.command),
        "User": spec.user,
        "Env": [f"{v.name}={v.value}" for v in spec.env],
        "Labels": dict(spec.labels),
        "Healthcheck": {"Test": ["NONE"]},
        "WorkingDir": spec.working_dir,
        "StopSignal": spec.stop_signal,
        "Hostname": spec.hostname or "",
        "Domainname": "",
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "StdinOnce": spec.stdin_open,
        "AttachStdin": spec.stdin_open,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": _host_config(spec),
    }
