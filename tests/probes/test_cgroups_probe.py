"""Cgroup probe: mountinfo and /proc/self/cgroup samples of v1, v2 and hybrid hosts."""

from __future__ import annotations

from pathlib import Path

from sandbox.policy.facts import CgroupLayout, CgroupMount
from sandbox.probes import cgroups

DATA = Path(__file__).parent / "data"

# A legacy (v1-only) systemd host, e.g. CentOS 7: cpu and cpuacct share one hierarchy.
V1_MOUNTINFO = (DATA / "mountinfo-v1.txt").read_text()
V1_CGROUP = (DATA / "proc-cgroup-v1.txt").read_text()
# A unified (v2-only) host, e.g. Debian 12 or Fedora.
V2_MOUNTINFO = (DATA / "mountinfo-v2.txt").read_text()
V2_CGROUP = (DATA / "proc-cgroup-v2.txt").read_text()
# systemd's hybrid layout: every controller on v1, an empty unified tree for systemd.
HYBRID_MOUNTINFO = (DATA / "mountinfo-hybrid.txt").read_text()
HYBRID_CGROUP = (DATA / "proc-cgroup-hybrid.txt").read_text()


def test_v1_layout_mounts_and_controllers() -> None:
    mounts = cgroups.parse_mountinfo(V1_MOUNTINFO)
    assert cgroups.layout_of(mounts) is CgroupLayout.V1
    assert all(m.version == 1 for m in mounts)
    by_path = {m.path: m.controllers for m in mounts}
    assert by_path["/sys/fs/cgroup/cpu,cpuacct"] == ("cpu", "cpuacct")
    assert by_path["/sys/fs/cgroup/systemd"] == ("name=systemd",)  # xattr, release_agent dropped
    assert by_path["/sys/fs/cgroup/cpuset"] == ("cpuset",)  # clone_children dropped
    controllers = cgroups.controllers_of(mounts, ())
    assert set(controllers) == {"cpu", "cpuacct", "memory", "devices", "pids", "cpuset"}


def test_v2_layout_and_controllers_from_cgroup_controllers() -> None:
    mounts = cgroups.parse_mountinfo(V2_MOUNTINFO)
    assert mounts == (CgroupMount("/sys/fs/cgroup", (), 2),)
    assert cgroups.layout_of(mounts) is CgroupLayout.V2
    v2 = cgroups.parse_controllers_file("cpuset cpu io memory hugetlb pids rdma misc\n")
    assert cgroups.controllers_of(mounts, v2) == tuple(sorted(v2))


def test_hybrid_layout() -> None:
    mounts = cgroups.parse_mountinfo(HYBRID_MOUNTINFO)
    assert cgroups.layout_of(mounts) is CgroupLayout.HYBRID
    assert {m.version for m in mounts} == {1, 2}
    unified = [m for m in mounts if m.version == 2]
    assert unified == [CgroupMount("/sys/fs/cgroup/unified", (), 2)]


def test_no_cgroup_mounts_is_no_layout() -> None:
    assert cgroups.layout_of(cgroups.parse_mountinfo("garbage\n" + V1_MOUNTINFO[:80])) is None


def test_a_hierarchy_mounted_twice_is_listed_once_and_escapes_are_decoded() -> None:
    text = (
        V2_MOUNTINFO
        + "90 26 0:23 / /var/lib/with\\040space rw - cgroup2 cgroup2 rw\n"
        + "91 29 0:25 / /mnt/mem\\040ory rw - cgroup cgroup rw,memory\n"
    )
    mounts = cgroups.parse_mountinfo(text)
    assert [m.path for m in mounts] == ["/sys/fs/cgroup", "/mnt/mem ory"]


def test_proc_self_cgroup_lines() -> None:
    v1 = cgroups.parse_proc_cgroup(V1_CGROUP)
    assert {(m.hierarchy_id, m.controllers) for m in v1} >= {(3, ("cpu", "cpuacct"))}
    memory = next(m for m in v1 if m.controllers == ("memory",))
    assert memory.path == "/user.slice/user-1000.slice/session-2.scope"
    (unified,) = cgroups.parse_proc_cgroup(V2_CGROUP)
    assert (unified.hierarchy_id, unified.controllers) == (0, ())
    assert unified.path.endswith("vte-spawn-1.scope")
    hybrid = cgroups.parse_proc_cgroup(HYBRID_CGROUP)
    assert [m.hierarchy_id for m in hybrid] == [9, 4, 1, 0]


def test_parent_check_uses_the_existing_sandbox_dir_or_the_mount_root() -> None:
    mounts = cgroups.parse_mountinfo(HYBRID_MOUNTINFO)
    existing = {"/sys/fs/cgroup/memory/sandbox"}
    writable = {m.path for m in mounts} | existing
    asked: list[str] = []

    def can_write(path: str) -> bool:
        asked.append(path)
        return path in writable

    ok, why = cgroups.parent_check(mounts, existing.__contains__, can_write)
    assert ok and why is None
    assert "/sys/fs/cgroup/memory/sandbox" in asked
    assert "/sys/fs/cgroup/memory" not in asked


def test_parent_check_names_what_it_cannot_write() -> None:
    mounts = cgroups.parse_mountinfo(V1_MOUNTINFO)
    ok, why = cgroups.parent_check(mounts, lambda _: False, lambda p: not p.endswith("memory"))
    assert not ok and why is not None
    assert "/sys/fs/cgroup/memory" in why
    assert "/sys/fs/cgroup/pids" not in why
    none_ok, none_why = cgroups.parent_check((), lambda _: False, lambda _: True)
    assert not none_ok and none_why is not None


def test_probe_of_this_host_agrees_with_its_mountinfo() -> None:
    facts = cgroups.probe({})
    with open("/proc/self/mountinfo") as f:
        mounts = cgroups.parse_mountinfo(f.read())
    assert facts.available == bool(mounts)
    assert facts.mounts == mounts
    assert facts.layout is cgroups.layout_of(mounts)
    assert facts.can_create_parent == (facts.parent_reason is None)


def test_bind_mounts_of_sub_cgroups_are_not_hierarchies() -> None:
    # Inside a container (or a delegated subtree) the cgroup mount's root is not "/": paths
    # under it are not hierarchy paths, so they must not be used for the sandbox parent.
    text = (
        "40 31 0:32 /docker/0123abcd /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
        "41 31 0:33 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids\n"
        "42 31 0:34 /sub /mnt/v2 rw - cgroup2 cgroup2 rw\n"
    )
    assert cgroups.parse_mountinfo(text) == (CgroupMount("/sys/fs/cgroup/pids", ("pids",), 1),)
