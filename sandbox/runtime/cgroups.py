"""The app-level cgroup (cgroupfs driver): create it, limit it, remove it, list it. No docker."""

from __future__ import annotations

import enum
import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cgroupspy.controllers import Controller, CpuController, CpuSetController, MemoryController
from cgroupspy.nodes import Node

from sandbox.errors import CgroupError, CgroupUnavailableError
from sandbox.host.names import CGROUP_ROOT, check_app_id, is_valid_app_id
from sandbox.policy.facts import CgroupFacts, CgroupMount
from sandbox.policy.plan import Limits
from sandbox.probes import cgroups as cgroup_probe

# Every container of an app sits at /sandbox/<app-id>/<container leaf> in every hierarchy
# (runc joins all v1 hierarchies, named ones included, and the cgroup2 mount). Limits written
# on /sandbox/<app-id> therefore hold for all the app's instances together. Docker creates the
# parent dirs when missing but never removes them; this module owns their whole life.
#
# With the systemd driver none of this runs: docker gets `sandbox-<escaped>.slice` as
# cgroup_parent and asks systemd to create the slice; app-wide limits go on the slice unit
# (runtime/systemd.py: systemctl set-property --runtime), not in files here.

CPU_PERIOD_US = 100_000


class Knob(enum.Enum):
    """One limit file; the value says the file name, the hierarchy version is in the write."""

    V1_MEMORY_LIMIT = "memory.limit_in_bytes"
    V1_MEMSW_LIMIT = "memory.memsw.limit_in_bytes"
    V1_CPU_PERIOD = "cpu.cfs_period_us"
    V1_CPU_QUOTA = "cpu.cfs_quota_us"
    V1_PIDS_MAX = "pids.max"
    V2_MEMORY_MAX = "memory.max"
    V2_SWAP_MAX = "memory.swap.max"
    V2_CPU_MAX = "cpu.max"
    V2_PIDS_MAX = "pids.max"


@dataclass(frozen=True)
class KnobWrite:
    mount: CgroupMount
    knob: Knob
    value: str


@dataclass(frozen=True)
class AppCgroupDirs:
    """Where one app's parent cgroup lives in each hierarchy."""

    app_id: str
    dirs: tuple[str, ...]  # "/sys/fs/cgroup/memory/sandbox/com.example.Game", ...


# --- pure: which hierarchies, which dirs, which writes ------------------------------------------


def app_dirs(app_id: str, mounts: Iterable[CgroupMount]) -> tuple[str, ...]:
    """The app's parent dir in every hierarchy, in mount order."""
    check_app_id(app_id)
    return tuple(os.path.join(m.path, CGROUP_ROOT, app_id) for m in mounts)


def plan_limit_writes(
    limits: Limits, mounts: Iterable[CgroupMount], v2_controllers: Iterable[str] = ()
) -> tuple[KnobWrite, ...]:
    """Which limit files to write, in order; each limit goes to the hierarchy owning its controller.

    `v2_controllers` are those the unified hierarchy offers (its cgroup.controllers); on a
    hybrid host a controller bound to a v1 hierarchy is never offered there.
    """
    mounts = tuple(mounts)
    v2 = frozenset(v2_controllers)
    quota = max(1000, round(limits.cpus * CPU_PERIOD_US))
    writes: list[KnobWrite] = []

    def v1(controller: str) -> CgroupMount | None:
        return next((m for m in mounts if m.version == 1 and controller in m.controllers), None)

    unified = next((m for m in mounts if m.version == 2), None)
    for controller in ("memory", "cpu", "pids"):
        mount = v1(controller)
        if mount is not None:
            if controller == "memory":
                # limit first: on a fresh cgroup both are unlimited and memsw may not go below it
                value = str(limits.memory_bytes)
                writes.append(KnobWrite(mount, Knob.V1_MEMORY_LIMIT, value))
                writes.append(KnobWrite(mount, Knob.V1_MEMSW_LIMIT, value))
            elif controller == "cpu":
                writes.append(KnobWrite(mount, Knob.V1_CPU_PERIOD, str(CPU_PERIOD_US)))
                writes.append(KnobWrite(mount, Knob.V1_CPU_QUOTA, str(quota)))
            else:
                writes.append(KnobWrite(mount, Knob.V1_PIDS_MAX, str(limits.pids)))
        elif unified is not None and controller in v2:
            if controller == "memory":
                writes.append(KnobWrite(unified, Knob.V2_MEMORY_MAX, str(limits.memory_bytes)))
                writes.append(KnobWrite(unified, Knob.V2_SWAP_MAX, "0"))
            elif controller == "cpu":
                writes.append(KnobWrite(unified, Knob.V2_CPU_MAX, f"{quota} {CPU_PERIOD_US}"))
            else:
                writes.append(KnobWrite(unified, Knob.V2_PIDS_MAX, str(limits.pids)))
    return tuple(writes)


# --- I/O ----------------------------------------------------------------------------------------


def host_hierarchies(facts: CgroupFacts | None = None) -> tuple[CgroupMount, ...]:
    """The hierarchies from the cgroup probe's facts; probes now when none are given."""
    if facts is None:
        facts = cgroup_probe.probe({})
    if not facts.available:
        raise CgroupUnavailableError(f"cgroups: {facts.reason or 'no cgroup hierarchy is mounted'}")
    return facts.mounts


def _v1_node(mount: CgroupMount, *names: str) -> Node:
    # Node chains built by hand: cgroupspy's Tree() would walk every cgroup on the host
    root = Node(os.path.dirname(mount.path))
    node = Node(os.path.basename(mount.path), parent=root)
    for name in names:
        node = node.create_cgroup(name)
    return node


def _fail(what: str, path: str, exc: OSError) -> CgroupError:
    return CgroupError(f"cgroups: cannot {what} {path}: {exc.strerror or exc}")


def _copy_cpuset(node: Node) -> None:
    # a v1 cpuset cgroup starts with no cpus and mems, and no task can join it like that
    own, parent = CpuSetController(node), CpuSetController(node.parent)
    for name in (b"cpuset.cpus", b"cpuset.mems"):
        if not own.get_property(name):
            own.set_property(name, parent.get_property(name))


def _v2_enable(path: str, controllers: Iterable[str]) -> None:
    wanted = " ".join(f"+{c}" for c in controllers)
    if wanted:
        with open(os.path.join(path, "cgroup.subtree_control"), "w", encoding="ascii") as f:
            f.write(wanted)


def _read_v2_controllers(mount: CgroupMount) -> tuple[str, ...]:
    with open(os.path.join(mount.path, "cgroup.controllers"), encoding="ascii") as f:
        return tuple(f.read().split())


def create_app_cgroup(
    app_id: str, limits: Limits | None = None, facts: CgroupFacts | None = None
) -> AppCgroupDirs:
    """Create /sandbox/<app-id> in every hierarchy (idempotent) and set the app-wide limits."""
    check_app_id(app_id)
    mounts = host_hierarchies(facts)
    if not mounts:
        raise CgroupUnavailableError("cgroups: no cgroup hierarchy is mounted")
    v2_controllers: tuple[str, ...] = ()
    dirs: list[str] = []
    for mount in mounts:
        path = os.path.join(mount.path, CGROUP_ROOT, app_id)
        try:
            if mount.version == 1:
                node = _v1_node(mount, CGROUP_ROOT, app_id)
                if "cpuset" in mount.controllers:
                    _copy_cpuset(node.parent)
                    _copy_cpuset(node)
            else:
                v2_controllers = _read_v2_controllers(mount)
                wanted = [c for c in ("memory", "cpu", "pids") if c in v2_controllers]
                _v2_enable(mount.path, wanted)
                os.makedirs(path, exist_ok=True)
                _v2_enable(os.path.dirname(path), wanted)
                _v2_enable(path, wanted)
        except OSError as exc:
            raise _fail("create", path, exc) from exc
        dirs.append(path)
    cgroup = AppCgroupDirs(app_id, tuple(dirs))
    if limits is not None:
        apply_limits(cgroup, limits, mounts, v2_controllers)
    return cgroup


def apply_limits(
    cgroup: AppCgroupDirs,
    limits: Limits,
    mounts: tuple[CgroupMount, ...],
    v2_controllers: Iterable[str] = (),
) -> None:
    """Write the app-wide limits on the app's parent cgroup."""
    for write in plan_limit_writes(limits, mounts, v2_controllers):
        path = os.path.join(write.mount.path, CGROUP_ROOT, cgroup.app_id)
        try:
            if write.mount.version == 1:
                _write_v1(_v1_node(write.mount, CGROUP_ROOT, cgroup.app_id), write, limits)
            else:
                with open(os.path.join(path, write.knob.value), "w", encoding="ascii") as f:
                    f.write(write.value)
        except FileNotFoundError:
            if write.knob is Knob.V1_MEMSW_LIMIT or write.knob is Knob.V2_SWAP_MAX:
                continue  # swap accounting is off on this kernel: nothing to escape through
            raise _fail(f"set {write.knob.value} in", path, FileNotFoundError()) from None
        except OSError as exc:
            raise _fail(f"set {write.knob.value}={write.value} in", path, exc) from exc


def _write_v1(node: Node, write: KnobWrite, limits: Limits) -> None:
    value = int(write.value)
    if write.knob is Knob.V1_MEMORY_LIMIT:
        memory = MemoryController(node)
        try:
            memory.limit_in_bytes = value
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # raising the limit of an existing cgroup: memsw may never be below it, so it
            # goes first (the memsw write that follows in the plan then repeats the value)
            memory.memsw_limit_in_bytes = limits.memory_bytes
            memory.limit_in_bytes = value
    elif write.knob is Knob.V1_MEMSW_LIMIT:
        MemoryController(node).memsw_limit_in_bytes = value
    elif write.knob is Knob.V1_CPU_PERIOD:
        CpuController(node).cfs_period_us = value
    elif write.knob is Knob.V1_CPU_QUOTA:
        CpuController(node).cfs_quota_us = value
    else:
        Controller(node).set_property(write.knob.value.encode(), write.value)


def dir_in_use(path: str) -> bool:
    """True while the cgroup dir holds a task or a child cgroup (a container's leaf)."""
    try:
        with os.scandir(path) as entries:
            if any(e.is_dir(follow_symlinks=False) for e in entries):
                return True
        with open(os.path.join(path, "cgroup.procs"), encoding="ascii") as f:
            return bool(f.read().strip())
    except FileNotFoundError:
        return False


def app_cgroup_in_use(app_id: str, facts: CgroupFacts | None = None) -> bool:
    """True while any hierarchy still holds a task or a container under the app's parent."""
    try:
        return any(dir_in_use(p) for p in app_dirs(app_id, host_hierarchies(facts)))
    except OSError as exc:
        raise CgroupError(f"cgroups: cannot inspect the cgroup of {app_id}: {exc}") from exc


def remove_app_cgroup(app_id: str, facts: CgroupFacts | None = None) -> bool:
    """Remove the app's parent in every hierarchy once it is empty; False while still in use.

    Callers serialise this with launches of the same app; the kernel's own emptiness check on
    rmdir still makes a lost race fail safe (EBUSY: kept, reported as in use).
    """
    dirs = app_dirs(app_id, host_hierarchies(facts))
    if any(dir_in_use(p) for p in dirs):
        return False
    removed_all = True
    for path in dirs:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                removed_all = False
                continue
            raise _fail("remove", path, exc) from exc
    return removed_all


def list_app_cgroups(facts: CgroupFacts | None = None) -> tuple[str, ...]:
    """The app ids that have a parent cgroup in any hierarchy, sorted; for gc."""
    found: set[str] = set()
    for mount in host_hierarchies(facts):
        root = os.path.join(mount.path, CGROUP_ROOT)
        try:
            with os.scandir(root) as entries:
                found.update(
                    e.name
                    for e in entries
                    if e.is_dir(follow_symlinks=False) and is_valid_app_id(e.name)
                )
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _fail("list", root, exc) from exc
    return tuple(sorted(found))
