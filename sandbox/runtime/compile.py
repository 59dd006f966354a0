"""compile(plan, grant) -> ContainerSpec: pure translation of directives; no I/O, no docker."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from sandbox.errors import LaunchError
from sandbox.host import names
from sandbox.policy.mounts import MountContext, mount_problem
from sandbox.policy.plan import (
    EnvVar,
    LaunchPlan,
    Mount,
    MountKind,
    NetworkMode,
    NvidiaMethod,
    NvidiaRequest,
)
from sandbox.providers.grant import Grant
from sandbox.runtime.spec import ContainerSpec

NANO = 1_000_000_000
LABEL_APP_VERSION = "sandbox.app-version"
LABEL_LAUNCHER = "sandbox.launcher"  # "<pid>:<start time in clock ticks>", for gc
LABEL_INSTANCE_DIR = "sandbox.instance-dir"

_HOSTNAME_BAD = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class LaunchTarget:
    """What compile() needs besides the plan and the grants: one instance of one image."""

    image: str
    launcher: str  # LABEL_LAUNCHER value
    instance_dir: str
    args: tuple[str, ...] = ()  # appended to the manifest's command
    tty: bool = False
    stdin_open: bool = False
    # For the mount never-list (sandbox/policy/mounts.py), from HostFacts.user and the storage
    # provider's layout: the home no bind may expose, the runtime dir where rootless engines keep
    # their sockets, and the app's own storage dir, which with instance_dir is all that may be
    # bound writable.
    home: str | None = None
    runtime_dir: str | None = None
    storage_dir: str | None = None
    # From the image's config (engine ImageConfig), as data: its VOLUME paths, each masked, and
    # its WORKDIR, the app's working dir when absolute.
    image_volumes: tuple[str, ...] = ()
    image_working_dir: str = ""

    def mount_context(self) -> MountContext:
        roots = (self.instance_dir, *((self.storage_dir,) if self.storage_dir else ()))
        return MountContext(home=self.home, runtime_dir=self.runtime_dir, writable_roots=roots)


def hostname_for(app_id: str) -> str:
    """A DNS label from the app id's last element ("com.example.Game" -> "game")."""
    last = names.check_app_id(app_id).rsplit(".", 1)[-1].lower()
    label = _HOSTNAME_BAD.sub("-", last).strip("-")[:63]
    return label or "app"


def volume_masks(volumes: tuple[str, ...], taken: tuple[Mount, ...]) -> tuple[Mount, ...]:
    """A read-only tmpfs over each image VOLUME that no mount of the plan or the grants already
    stands on: either way the engines create no anonymous volume there (docs/runtime.md "Image
    config"). No size: nothing can be written, and Podman copies the image's files at that
    path into it (its tmpfs copy-up), which a size would make fail."""
    at = {m.target for m in taken}
    masks: dict[str, Mount] = {}
    for volume in volumes:
        path = "/" + posixpath.normpath(volume).lstrip("/")  # as the engines clean it
        if not volume.startswith("/") or path == "/":
            raise LaunchError(f"the image declares VOLUME {volume!r}, which cannot be masked")
        if path not in at:
            masks[path] = Mount(path, MountKind.TMPFS, read_only=True)
    return tuple(masks.values())


def compile(plan: LaunchPlan, grant: Grant, target: LaunchTarget) -> ContainerSpec:
    """The container spec for one instance; raises LaunchError when plan and grants clash.

    Nothing is left to the image's config (docs/runtime.md "Image config"): the command is the
    manifest's, run as the plan's user, its VOLUMEs are masked, its WORKDIR taken only as an
    absolute path; container_body clears the entrypoint and the healthcheck."""
    h = plan.hardening
    mounts = h.tmpfs + plan.mounts + grant.mounts
    mounts += volume_masks(target.image_volumes, mounts)
    # Every mount, the plan's and the providers', meets the never-list here: the last pure step
    # before the engine sees them, and the first that knows the providers' host paths.
    ctx = target.mount_context()
    for m in mounts:
        problem = mount_problem(m, ctx)
        if problem is not None:
            raise LaunchError(f"refusing the {problem}")
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            raise LaunchError(f"two mounts at {m.target}")
        seen.add(m.target)

    env: dict[str, EnvVar] = {v.name: v for v in plan.env}
    for var in grant.env:
        if var.name in env and env[var.name] != var:
            raise LaunchError(f"a grant sets {var.name}, which the plan sets differently")
        env[var.name] = var

    nvidia = [r for r in plan.requests if isinstance(r, NvidiaRequest)]
    labels = (
        (names.LABEL_MANAGED, "1"),
        (names.LABEL_APP_ID, plan.labels.app_id),
        (LABEL_APP_VERSION, plan.labels.app_version),
        (LABEL_LAUNCHER, target.launcher),
        (LABEL_INSTANCE_DIR, target.instance_dir),
    )
    return ContainerSpec(
        image=target.image,
        command=plan.app.command + target.args,
        uid=h.user.uid,
        gid=h.user.gid,
        group_ids=tuple(dict.fromkeys([g.gid for g in plan.groups] + list(grant.group_ids))),
        env=tuple(env.values()),
        mounts=mounts,
        devices=tuple(dict.fromkeys(plan.devices + grant.devices)),
        device_cgroup_rules=plan.device_cgroup_rules,
        labels=labels,
        cgroup_parent=plan.cgroup_parent.path,
        memory_bytes=plan.limits.memory_bytes,
        nano_cpus=round(plan.limits.cpus * NANO),
        pids_limit=plan.limits.pids,
        network=h.network,
        network_name=(
            names.app_network_name(plan.labels.app_id) if h.network is NetworkMode.APP else None
        ),
        hostname=grant.hostname or hostname_for(plan.labels.app_id),
        read_only_root=h.read_only_root,
        cap_drop=h.cap_drop,
        cap_add=h.cap_add,
        no_new_privileges=h.no_new_privileges,
        seccomp=h.seccomp,
        private_ipc=True,
        private_pid=True,
        nvidia_runtime=any(r.method is NvidiaMethod.RUNTIME for r in nvidia),
        cdi_devices=tuple(d for r in nvidia for d in r.cdi_devices),
        tty=target.tty,
        stdin_open=target.stdin_open,
        working_dir=_working_dir(target.image_working_dir),
    )


def _working_dir(image_working_dir: str) -> str:
    path = posixpath.normpath(image_working_dir) if image_working_dir.startswith("/") else "/"
    return "/" + path.lstrip("/")
