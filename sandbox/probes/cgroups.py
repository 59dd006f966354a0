"""Cgroup probe: parse mountinfo and /proc/self/cgroup, check access; never creates a cgroup."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from sandbox.policy.facts import CgroupFacts, CgroupLayout, CgroupMembership, CgroupMount

PARENT_NAME = "sandbox"  # runtime places apps at /<PARENT_NAME>/<app-id> in every hierarchy

# Super-block options of a v1 cgroup mount that are not controllers.
_V1_NON_CONTROLLERS = frozenset(
    {
        "rw",
        "ro",
        "none",
        "all",
        "noprefix",
        "clone_children",
        "xattr",
        "cpuset_v2_mode",
        "favordynmods",
    }
)
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> tuple[CgroupMount, ...]:
    """The cgroup mounts of a /proc/PID/mountinfo, one per hierarchy (first mount wins)."""
    mounts: list[CgroupMount] = []
    seen: set[tuple[int, tuple[str, ...]]] = set()
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        head = left.split()
        tail = right.split()
        if len(head) < 5 or len(tail) < 3:
            continue
        if _unescape(head[3]) != "/":
            # A bind mount of a sub-cgroup (a container's view, or a delegated subtree): paths
            # under it are not hierarchy paths, so the sandbox parent cannot be made there.
            continue
        fstype, super_options = tail[0], tail[2].split(",")
        controllers: tuple[str, ...]
        if fstype == "cgroup2":
            version, controllers = 2, ()
        elif fstype == "cgroup":
            version = 1
            controllers = tuple(
                sorted(
                    o
                    for o in super_options
                    if o not in _V1_NON_CONTROLLERS and ("=" not in o or o.startswith("name="))
                )
            )
        else:
            continue
        key = (version, controllers)
        if key in seen:
            continue
        seen.add(key)
        mounts.append(
            CgroupMount(path=_unescape(head[4]), controllers=controllers, version=version)
        )
    return tuple(mounts)


def parse_proc_cgroup(text: str) -> tuple[CgroupMembership, ...]:
    """Lines "id:controllers:path" of /proc/PID/cgroup."""
    out: list[CgroupMembership] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        controllers = tuple(sorted(c for c in parts[1].split(",") if c))
        out.append(CgroupMembership(int(parts[0]), controllers, parts[2]))
    return tuple(out)


def parse_controllers_file(text: str) -> tuple[str, ...]:
    """cgroup.controllers of a v2 cgroup: space-separated names."""
    return tuple(text.split())


def layout_of(mounts: tuple[CgroupMount, ...]) -> CgroupLayout | None:
    versions = {m.version for m in mounts}
    if versions == {1, 2}:
        return CgroupLayout.HYBRID
    if versions == {2}:
        return CgroupLayout.V2
    if versions == {1}:
        return CgroupLayout.V1
    return None


def controllers_of(
    mounts: tuple[CgroupMount, ...], v2_controllers: tuple[str, ...]
) -> tuple[str, ...]:
    """Every real controller the host offers (named v1 hierarchies like name=systemd excluded)."""
    names = {c for m in mounts for c in m.controllers if not c.startswith("name=")}
    names.update(v2_controllers)
    return tuple(sorted(names))


def parent_check(
    mounts: tuple[CgroupMount, ...],
    is_dir: Callable[[str], bool],
    writable: Callable[[str], bool],
) -> tuple[bool, str | None]:
    """May this user create (or use) /sandbox in every hierarchy? Docker puts the app in all."""
    refused: list[str] = []
    for mount in mounts:
        parent = os.path.join(mount.path, PARENT_NAME)
        target = parent if is_dir(parent) else mount.path
        if not writable(target):
            refused.append(target)
    if not mounts:
        return False, "no cgroup hierarchy is mounted"
    if refused:
        shown = ", ".join(refused[:3]) + (
            f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        )
        return False, f"cannot write {shown} (needs root or a delegated cgroup subtree)"
    return True, None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def probe(env: Mapping[str, str]) -> CgroupFacts:
    """Facts about the cgroup layout as this process sees it."""
    del env  # cgroups do not depend on the environment; the runner passes it to every probe
    mountinfo = _read("/proc/self/mountinfo")
    if mountinfo is None:
        return CgroupFacts(False, "cannot read /proc/self/mountinfo (is /proc mounted?)")
    own = parse_proc_cgroup(_read("/proc/self/cgroup") or "")
    mounts = parse_mountinfo(mountinfo)
    layout = layout_of(mounts)
    if layout is None:
        reason = "no cgroup filesystem is mounted"
        if own:
            reason += " (the kernel has cgroups: /proc/self/cgroup lists them)"
        return CgroupFacts(False, reason, own=own)
    v2_controllers: tuple[str, ...] = ()
    for mount in mounts:
        if mount.version == 2:
            v2_controllers = parse_controllers_file(
                _read(os.path.join(mount.path, "cgroup.controllers")) or ""
            )
    can_create, why = parent_check(mounts, os.path.isdir, _writable)
    return CgroupFacts(
        available=True,
        layout=layout,
        mounts=mounts,
        controllers=controllers_of(mounts, v2_controllers),
        can_create_parent=can_create,
        parent_reason=why,
        own=own,
    )
