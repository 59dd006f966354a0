"""Unit tests of the pure half of runtime/cgroups: which dirs and which limit files."""

from __future__ import annotations

import pytest

from sandbox.errors import PolicyError
from sandbox.policy.facts import CgroupMount
from sandbox.policy.plan import Limits
from sandbox.runtime.cgroups import CPU_PERIOD_US, Knob, app_dirs, plan_limit_writes

V1 = (
    CgroupMount("/sys/fs/cgroup/cpu,cpuacct", ("cpu", "cpuacct"), 1),
    CgroupMount("/sys/fs/cgroup/memory", ("memory",), 1),
    CgroupMount("/sys/fs/cgroup/pids", ("pids",), 1),
    CgroupMount("/sys/fs/cgroup/systemd", ("name=systemd",), 1),
)
UNIFIED = CgroupMount("/sys/fs/cgroup/unified", (), 2)
V2 = (CgroupMount("/sys/fs/cgroup", (), 2),)
LIMITS = Limits(memory_bytes=64 * 2**20, cpus=1.5, pids=256)


def test_app_dir_in_every_hierarchy_named_ones_included() -> None:
    dirs = app_dirs("com.example.Game", (*V1, UNIFIED))
    assert len(dirs) == len(V1) + 1
    assert all(d.endswith("/sandbox/com.example.Game") for d in dirs)
    assert {d.rsplit("/sandbox/", 1)[0] for d in dirs} == {m.path for m in (*V1, UNIFIED)}


def test_app_dirs_refuse_an_invalid_id() -> None:
    with pytest.raises(PolicyError):
        app_dirs("../../etc", V1)


def test_hybrid_limits_go_to_the_v1_hierarchies_owning_the_controllers() -> None:
    writes = plan_limit_writes(LIMITS, (*V1, UNIFIED), v2_controllers=("hugetlb",))
    by_knob = {w.knob: w for w in writes}
    assert by_knob[Knob.V1_MEMORY_LIMIT].mount.controllers == ("memory",)
    assert by_knob[Knob.V1_MEMORY_LIMIT].value == str(LIMITS.memory_bytes)
    # swap must not carry the app past its limit
    assert by_knob[Knob.V1_MEMSW_LIMIT].value == str(LIMITS.memory_bytes)
    assert writes.index(by_knob[Knob.V1_MEMORY_LIMIT]) < writes.index(by_knob[Knob.V1_MEMSW_LIMIT])
    quota = int(by_knob[Knob.V1_CPU_QUOTA].value)
    assert quota / int(by_knob[Knob.V1_CPU_PERIOD].value) == LIMITS.cpus
    assert by_knob[Knob.V1_PIDS_MAX].value == str(LIMITS.pids)
    assert all(w.mount.version == 1 for w in writes)


def test_pure_v2_limits_use_the_unified_files() -> None:
    writes = plan_limit_writes(LIMITS, V2, v2_controllers=("cpu", "memory", "pids", "io"))
    values = {w.knob: w.value for w in writes}
    assert values[Knob.V2_MEMORY_MAX] == str(LIMITS.memory_bytes)
    assert values[Knob.V2_SWAP_MAX] == "0"
    quota, period = map(int, values[Knob.V2_CPU_MAX].split())
    assert (quota / period, period) == (LIMITS.cpus, CPU_PERIOD_US)
    assert values[Knob.V2_PIDS_MAX] == str(LIMITS.pids)


def test_controllers_nobody_offers_are_skipped() -> None:
    assert plan_limit_writes(LIMITS, V2, v2_controllers=("memory",)) == tuple(
        w for w in plan_limit_writes(LIMITS, V2, ("memory",)) if w.knob.value.startswith("memory")
    )
    assert not any(
        w.knob.value.startswith(("cpu", "pids")) for w in plan_limit_writes(LIMITS, V2, ("memory",))
    )
