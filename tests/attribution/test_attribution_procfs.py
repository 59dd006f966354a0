"""Unit tests of the /proc/<pid>/cgroup parser over recorded samples of every layout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.attribution import AppIdentity, AttributionCache, Validation, app_for_pid
from sandbox.attribution.procfs import parse_cgroup_file, parse_cgroup_path
from sandbox.errors import ProbeError
from sandbox.host.names import app_slice_name

CID = "57be053cb4c41d143570188a8d407d845868acd50640ea06b01f5d49d5aa1ced"
CID2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
APP = "com.example.Game"
DASHED = "org.example.my-game_2"

# Recorded on this host (Debian 12, docker 20.10, cgroupfs, hybrid) with
# `docker run --cgroup-parent /sandbox/com.example.Exp ...`; the app id is substituted.
V1_HYBRID_CGROUPFS_DOCKER = """\
9:name=systemd:/sandbox/{app}/{cid}
8:pids:/sandbox/{app}/{cid}
7:blkio:/sandbox/{app}/{cid}
6:freezer:/sandbox/{app}/{cid}
5:devices:/sandbox/{app}/{cid}
4:memory:/sandbox/{app}/{cid}
3:cpuset:/sandbox/{app}/{cid}
2:cpuacct:/sandbox/{app}/{cid}
1:cpu:/sandbox/{app}/{cid}
0::/sandbox/{app}/{cid}
"""
# v1 without a unified mount, comounted controllers (older Debian/Ubuntu), podman cgroupfs.
V1_PODMAN = """\
12:cpu,cpuacct:/sandbox/{app}/libpod-{cid}
11:net_cls,net_prio:/sandbox/{app}/libpod-{cid}
10:memory:/sandbox/{app}/libpod-{cid}
9:pids:/sandbox/{app}/libpod-{cid}
1:name=systemd:/sandbox/{app}/libpod-{cid}
"""
V2_CGROUPFS_DOCKER = "0::/sandbox/{app}/{cid}\n"
V2_SYSTEMD_DOCKER = "0::/sandbox.slice/{slice}/docker-{cid}.scope\n"
V2_SYSTEMD_PODMAN = "0::/sandbox.slice/{slice}/libpod-{cid}.scope\n"
V2_SYSTEMD_PODMAN_CONMON = "0::/sandbox.slice/{slice}/libpod-conmon-{cid}.scope\n"
# systemd driver on a hybrid host: v1 lines and the unified line all name the scope
HYBRID_SYSTEMD_DOCKER = """\
12:pids:/sandbox.slice/{slice}/docker-{cid}.scope
5:memory:/sandbox.slice/{slice}/docker-{cid}.scope
1:name=systemd:/sandbox.slice/{slice}/docker-{cid}.scope
0::/sandbox.slice/{slice}/docker-{cid}.scope
"""
# systemd running inside the container (cgroupns=private) makes sub-cgroups in its own subtree
V2_SYSTEMD_NESTED = "0::/sandbox.slice/{slice}/docker-{cid}.scope/init.scope\n"

ALL_APP_LAYOUTS = [
    V1_HYBRID_CGROUPFS_DOCKER,
    V1_PODMAN,
    V2_CGROUPFS_DOCKER,
    V2_SYSTEMD_DOCKER,
    V2_SYSTEMD_PODMAN,
    HYBRID_SYSTEMD_DOCKER,
    V2_SYSTEMD_NESTED,
]

HOST_SAMPLES = [
    # this host's own shell: v1 + unified, one hierarchy somewhere else
    "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/4a6f6b2d0f1c\n0::/\n",
    "0::/init.scope\n",
    "0::/system.slice/docker.service\n",
    f"0::/system.slice/docker-{CID}.scope\n",  # a container, but not one of ours
    f"12:memory:/docker/{CID}\n0::/docker/{CID}\n",
    "0::/user.slice/user-1000.slice/session-2.scope\n",
    "0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
    "app-flatpak-org.gnome.Calculator-12345.scope\n",
    "1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n0::/user.slice\n",
    # "sandbox" somewhere else in the path is not our root
    f"0::/user.slice/sandbox/{APP}/{CID}\n",
    f"0::/machine.slice/sandbox.slice/sandbox-{APP}.slice/docker-{CID}.scope\n",
    "",
]


def fill(template: str, app: str = APP, cid: str = CID) -> str:
    return template.format(app=app, cid=cid, slice=app_slice_name(app))


@pytest.mark.parametrize("template", ALL_APP_LAYOUTS)
@pytest.mark.parametrize("app", [APP, DASHED])
def test_every_app_layout_names_app_instance_and_container(template: str, app: str) -> None:
    identity = parse_cgroup_file(fill(template, app, CID2))
    assert identity == AppIdentity(app_id=app, instance_id=CID2[:12], container_id=CID2)


@pytest.mark.parametrize("text", HOST_SAMPLES)
def test_host_processes_and_foreign_containers_are_none(text: str) -> None:
    assert parse_cgroup_file(text) is None


def test_podman_conmon_is_the_engine_not_the_app() -> None:
    assert parse_cgroup_file(fill(V2_SYSTEMD_PODMAN_CONMON)) is None


@pytest.mark.parametrize(
    "path",
    [
        f"/sandbox/{APP}",  # the app level itself: no container
        f"/sandbox/{APP}/",
        f"/sandbox/{APP}/{CID[:63]}",  # short leaf
        f"/sandbox/{APP}/{CID}0",  # long leaf
        f"/sandbox/{APP}/{CID.upper()}",
        f"/sandbox/{APP}/docker-{CID}.scope",  # systemd leaf under the cgroupfs root
        f"/sandbox/{APP}/conmon",
        f"/sandbox/{APP}/{CID}//x",
        f"/sandbox/{APP}/{CID}/",
        f"/sandbox/Game/{CID}",  # not reverse-DNS
        f"/sandbox/com.example/{CID}",  # two elements only
        f"/sandbox/com.1example.Game/{CID}",  # element starts with a digit
        f"/sandbox/com.my-example.Game/{CID}",  # '-' outside the last element
        f"/sandbox/{APP}/{APP}/{CID}",  # an extra level we never create
        f"/sandbox.slice/{app_slice_name(APP)}/{CID}",  # cgroupfs leaf under a slice
        f"/sandbox.slice/sandbox-com.example.my-game.slice/docker-{CID}.scope",  # unescaped '-'
        f"/sandbox.slice/sandbox-com.example.Game\\x2e.slice/docker-{CID}.scope",  # non-canonical
        f"/sandbox.slice/sandbox-com\\x2eexample.Game.slice/docker-{CID}.scope",
        f"/sandbox.slice/{app_slice_name(APP)}/crio-{CID}.scope",
        f"/../sandbox/{APP}/{CID}",  # outside the reader's cgroup namespace
    ],
)
def test_malformed_paths_are_none(path: str) -> None:
    assert parse_cgroup_path(path) is None
    assert parse_cgroup_file(f"0::{path}\n") is None


def test_lines_naming_different_containers_are_none() -> None:
    text = f"4:memory:/sandbox/{APP}/{CID}\n0::/sandbox/{APP}/{CID2}\n"
    assert parse_cgroup_file(text) is None


def test_one_malformed_sandbox_line_spoils_the_file() -> None:
    text = f"4:memory:/sandbox/{APP}/{CID}\n0::/sandbox/{APP}\n"
    assert parse_cgroup_file(text) is None


def test_hierarchies_outside_the_sandbox_root_are_ignored() -> None:
    # a v1 hierarchy the engine did not join keeps the process where it was
    text = f"3:net_cls:/\n4:memory:/sandbox/{APP}/{CID}\n"
    assert parse_cgroup_file(text) == AppIdentity(APP, CID[:12], CID)


@pytest.mark.parametrize("text", ["garbage", "4:memory\n", f"4/memory/sandbox/{APP}/{CID}\n"])
def test_unparseable_files_are_none(text: str) -> None:
    assert parse_cgroup_file(text) is None


@given(st.text(max_size=300))
def test_any_text_gives_none_or_a_valid_identity(text: str) -> None:
    identity = parse_cgroup_file(text)
    if identity is not None:
        assert len(identity.container_id) == 64
        assert identity.container_id.startswith(identity.instance_id)


@given(
    st.from_regex(
        r"[a-z_][a-z0-9_]{0,8}\.[A-Za-z_][A-Za-z0-9_]{0,8}\.[A-Za-z_][A-Za-z0-9_-]{0,12}",
        fullmatch=True,
    ).filter(str.isascii),  # from_regex has produced non-ASCII letters such as 'ª' here
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    st.sampled_from(ALL_APP_LAYOUTS),
)
def test_generated_ids_roundtrip_in_every_layout(app: str, cid: str, template: str) -> None:
    identity = parse_cgroup_file(fill(template, app, cid))
    assert identity is not None
    assert (identity.app_id, identity.container_id) == (app, cid)


# --- the I/O wrapper on real /proc --------------------------------------------------------------


def test_own_process_is_a_host_process() -> None:
    with open(f"/proc/{os.getpid()}/cgroup", encoding="utf-8") as f:
        if "/sandbox" in f.read():
            pytest.skip("the test runner itself runs inside a sandbox cgroup")
    assert app_for_pid(os.getpid()) is None


def test_gone_pid_is_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert app_for_pid(child.pid) is None


@pytest.mark.parametrize("pid", [0, -1, True])
def test_invalid_pid_is_an_error(pid: int) -> None:
    with pytest.raises(ProbeError, match="pid"):
        app_for_pid(pid)


# --- the cache ----------------------------------------------------------------------------------


class CountingLookup:
    def __init__(self, answer: AppIdentity | None) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self, pid: int) -> AppIdentity | None:
        self.calls += 1
        return self.answer


@pytest.mark.parametrize("validation", list(Validation))
def test_cache_answers_repeat_lookups_without_reading_again(validation: Validation) -> None:
    answer = AppIdentity(APP, CID[:12], CID)
    lookup = CountingLookup(answer)
    with AttributionCache(validation, ttl_s=60, lookup=lookup) as cache:
        assert [cache.lookup(os.getpid()) for _ in range(5)] == [answer] * 5
    assert lookup.calls == 1


def test_pidfd_cache_drops_an_entry_when_its_process_exits() -> None:
    lookup = CountingLookup(AppIdentity(APP, CID[:12], CID))
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    with AttributionCache(Validation.PIDFD, lookup=lookup) as cache:
        assert cache.lookup(child.pid) is not None
        assert cache.lookup(child.pid) is not None
        assert lookup.calls == 1
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
        # the pid is gone; a stale entry must not answer for whoever gets the pid next
        assert cache.lookup(child.pid) is None
        assert lookup.calls == 1  # pidfd_open failed: no read at all
        assert len(cache) == 0


def test_ttl_cache_reads_again_after_expiry() -> None:
    lookup = CountingLookup(None)
    with AttributionCache(Validation.TTL, ttl_s=1e-9, lookup=lookup) as cache:
        cache.lookup(os.getpid())
        cache.lookup(os.getpid())
    assert lookup.calls == 2


def test_cache_is_bounded_and_closes_what_it_evicts() -> None:
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    try:
        with AttributionCache(Validation.PIDFD, max_entries=2, lookup=CountingLookup(None)) as c:
            for child in children:
                c.lookup(child.pid)
            assert len(c) == 2
        assert len(c) == 0
    finally:
        for child in children:
            child.kill()
            child.wait()
