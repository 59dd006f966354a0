"""Integration: real containers under /sandbox/<app> map to the app by pid; app-wide limits hold."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from integration.components import missing, require_binary
from sandbox.attribution import AttributionCache, app_for_pid
from sandbox.policy.plan import Limits
from sandbox.runtime import cgroups

IMAGE = "sandbox-test/attribution:latest"
BINARIES = ("sh", "head", "tail", "sleep", "cat")
MiB = 2**20


def _docker(url: str, *args: str, check: bool = True) -> str:
    env = {**os.environ, "DOCKER_HOST": url}
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _libraries(binary: str) -> set[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    return set(re.findall(r"(/\S+\.so[^\s]*)", out))


@pytest.fixture(scope="session")
def hog_image(docker_client_url: str) -> str:
    """A few-MB image of host sh/head/tail/sleep: enough to hold memory and sleep."""
    require_binary("docker")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        files: set[str] = set()
        for name in BINARIES:
            path = shutil.which(name)
            if path is None:
                missing(f"'{name}' is not installed on the host")
            tar.add(os.path.realpath(path), arcname=f"bin/{name}")
            files |= _libraries(os.path.realpath(path))
        for lib in sorted(files):
            tar.add(os.path.realpath(lib), arcname=lib.lstrip("/"))
    env = {**os.environ, "DOCKER_HOST": docker_client_url}
    subprocess.run(
        ["docker", "import", "-", IMAGE],
        input=buf.getvalue(),
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return IMAGE


@pytest.fixture
def app_id() -> Iterator[str]:
    app = f"org.sandboxtest.Attribution{os.getpid()}_{time.monotonic_ns() % 10**6}"
    yield app
    cgroups.remove_app_cgroup(app)  # a failed test must not leave the dirs behind


def _run(url: str, image: str, app: str, command: str) -> str:
    return _docker(
        url,
        "run",
        "-d",
        "--network",
        "none",
        "--cgroup-parent",
        f"/sandbox/{app}",
        image,
        "/bin/sh",
        "-c",
        command,
    )


def _host_pids(app: str, container_id: str) -> list[int]:
    procs = f"/sys/fs/cgroup/pids/sandbox/{app}/{container_id}/cgroup.procs"
    if not os.path.exists(procs):  # pure v2 hosts
        procs = f"/sys/fs/cgroup/sandbox/{app}/{container_id}/cgroup.procs"
    with open(procs, encoding="ascii") as f:
        return [int(p) for p in f.read().split()]


def test_every_pid_of_two_instances_maps_to_the_app(
    docker_client_url: str, hog_image: str, app_id: str
) -> None:
    ids = [_run(docker_client_url, hog_image, app_id, "sleep 60 & sleep 60") for _ in range(2)]
    try:
        time.sleep(0.3)  # let sh fork its background sleep
        seen = set()
        with AttributionCache() as cache:
            for cid in ids:
                pids = _host_pids(app_id, cid)
                assert len(pids) >= 2
                for pid in pids:
                    identity = app_for_pid(pid)
                    assert identity is not None
                    assert (identity.app_id, identity.container_id) == (app_id, cid)
                    assert cache.lookup(pid) == identity
                    seen.add(identity.instance_id)
        assert len(seen) == 2  # two instances, told apart by their paths alone
        assert app_for_pid(os.getpid()) is None
        dockerd = subprocess.run(
            ["pidof", "dockerd"], capture_output=True, text=True, check=False
        ).stdout
        for daemon_pid in dockerd.split():
            assert app_for_pid(int(daemon_pid)) is None
        assert cgroups.app_cgroup_in_use(app_id)
        assert not cgroups.remove_app_cgroup(app_id)  # still running: kept
        assert app_id in cgroups.list_app_cgroups()
    finally:
        _docker(docker_client_url, "rm", "-f", *ids, check=False)
    assert cgroups.remove_app_cgroup(app_id)
    for mount in cgroups.host_hierarchies():
        assert not os.path.exists(os.path.join(mount.path, "sandbox", app_id))
    assert app_id not in cgroups.list_app_cgroups()


def _memory_file(path: str) -> int:
    with open(path, encoding="ascii") as f:
        return int(f.read())


@dataclass(frozen=True)
class _MemoryLayout:
    """Where the memory controller keeps an app's usage: v1's memory hierarchy or cgroup v2's."""

    root: str  # the hierarchy holding the memory controller
    usage: str  # current usage file of one cgroup
    peak: str  # peak usage file of one cgroup (v2: memory.peak, kernel 5.19+)
    v2: bool

    def usage_of(self, app: str, container_id: str) -> int:
        return _memory_file(f"{self.root}/sandbox/{app}/{container_id}/{self.usage}")


def _memory_layout() -> _MemoryLayout:
    if os.path.isdir("/sys/fs/cgroup/memory"):
        return _MemoryLayout(
            "/sys/fs/cgroup/memory", "memory.usage_in_bytes", "memory.max_usage_in_bytes", False
        )
    for mount in cgroups.host_hierarchies():
        if mount.version != 2:
            continue
        with open(os.path.join(mount.path, "cgroup.controllers"), encoding="ascii") as f:
            if "memory" in f.read().split():
                return _MemoryLayout(mount.path, "memory.current", "memory.peak", True)
    missing("no memory controller: neither the v1 memory hierarchy nor memory in cgroup v2")


def _local_memory_events(path: str) -> dict[str, int]:
    # .local: events raised by this cgroup's own limit, not propagated up from its children
    with open(os.path.join(path, "memory.events.local"), encoding="ascii") as f:
        return {k: int(v) for k, v in (line.split() for line in f if line.strip())}


def test_app_memory_limit_is_shared_by_all_instances(
    docker_client_url: str, hog_image: str, app_id: str
) -> None:
    layout = _memory_layout()
    limit = 64 * MiB
    cgroups.create_app_cgroup(app_id, Limits(memory_bytes=limit, cpus=2.0, pids=256))
    # tail holds a newline-free input in memory until EOF; the sleep keeps EOF away
    hog = f"(head -c {40 * MiB} /dev/zero; sleep 6) | tail >/dev/null"
    first = _run(docker_client_url, hog_image, app_id, hog)
    ids = [first]
    try:
        deadline = time.monotonic() + 10
        while layout.usage_of(app_id, first) < 38 * MiB:
            assert time.monotonic() < deadline, "the first half never reached 38 MiB"
            time.sleep(0.05)
        # alone, 40 MiB fits under the app's 64 MiB; the second half does not
        ids.append(_run(docker_client_url, hog_image, app_id, hog))
        codes = [int(_docker(docker_client_url, "wait", cid)) for cid in ids]
        assert 137 in codes, f"no half was OOM-killed: exit codes {codes}"
        # the kill came from the app-level limit: no container has one of its own, and the
        # app's parent was charged right up to its limit
        parent = f"{layout.root}/sandbox/{app_id}"
        for cid in ids:
            assert _docker(docker_client_url, "inspect", "-f", "{{.HostConfig.Memory}}", cid) == "0"
        if layout.v2:
            events = _local_memory_events(parent)
            assert events.get("oom", 0) >= 1, f"the app's own limit never ran out: {events}"
        if not layout.v2 or os.path.exists(f"{parent}/{layout.peak}"):
            assert limit - 4 * MiB <= _memory_file(f"{parent}/{layout.peak}") <= limit
    finally:
        _docker(docker_client_url, "rm", "-f", *ids, check=False)
    assert cgroups.remove_app_cgroup(app_id)
    for mount in cgroups.host_hierarchies():
        assert not os.path.exists(os.path.join(mount.path, "sandbox", app_id))
