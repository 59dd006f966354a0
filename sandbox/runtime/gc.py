"""Instances of this user (ps, stop) and gc of what dead launchers left; never touches save data."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.engine.adapter import DockerAdapter
from sandbox.errors import SandboxError
from sandbox.host.names import CGROUP_ROOT, LABEL_MANAGED
from sandbox.runtime import app_cgroup, app_network, instances
from sandbox.runtime.compile import LABEL_LAUNCHER

# Launcher tokens of --detach instances made before detached launches had a supervisor: such
# an instance is live while its container runs. Today a supervisor's own token is used.
DETACHED_PREFIX = "detached:"
TEARDOWN_GRACE_S = 10.0  # how long `stop` waits for a launcher to finish its teardown


@dataclass(frozen=True)
class InstanceInfo:
    app_id: str
    instance_id: str
    container_id: str | None
    started: float
    pids: tuple[int, ...]  # host pids, from the container's cgroup
    launcher_pid: int
    image: str


def _cgroup_mounts() -> tuple[str, ...]:
    from sandbox.runtime import cgroups

    return tuple(m.path for m in cgroups.host_hierarchies())


def container_pids(
    app_id: str, container_id: str, mounts: tuple[str, ...] | None = None
) -> tuple[int, ...]:
    """Host pids in the container's cgroup (and below it), from the first hierarchy holding it."""
    for mount in _cgroup_mounts() if mounts is None else mounts:
        for leaf in (container_id, f"libpod-{container_id}"):
            top = os.path.join(mount, CGROUP_ROOT, app_id, leaf)
            if not os.path.isdir(top):
                continue
            pids: set[int] = set()
            for dirpath, _dirs, _files in os.walk(top):
                with contextlib.suppress(OSError), open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids.update(int(x) for x in f.read().split())
            return tuple(sorted(pids))
    return ()


def launcher_alive(token: str) -> bool:
    return instances.launcher_alive(token.removeprefix(DETACHED_PREFIX))


def list_running(base: Path | None = None) -> list[InstanceInfo]:
    """This user's instances with a container, with their host pids."""
    base = instances.instances_dir(os.geteuid()) if base is None else base
    mounts = _cgroup_mounts()
    out = []
    for inst in instances.list_instances(base):
        s = inst.state
        if not s.container_id:
            continue
        out.append(
            InstanceInfo(
                s.app_id,
                s.instance_id,
                s.container_id,
                s.created,
                container_pids(s.app_id, s.container_id, mounts),
                s.launcher_pid,
                s.image,
            )
        )
    return out


def stop(target: str, timeout_s: int = 3, base: Path | None = None) -> list[str]:
    """Stop the instances of app `target`, or instance `target`; returns the stopped ids.

    Each launcher (a detached instance's supervisor) sees its app exit and tears down; this
    waits for that, so on return the providers are gone (cookie revoked, proxy stopped). A
    launcher that died earlier leaves its instance to gc."""
    base = instances.instances_dir(os.geteuid()) if base is None else base
    stopped: list[instances.Instance] = []
    for inst in instances.list_instances(base):
        s = inst.state
        if s.container_id and target in (s.app_id, s.instance_id, s.container_id):
            DockerAdapter.from_env(s.engine).stop(s.container_id, timeout_s)
            stopped.append(inst)
    deadline = time.monotonic() + TEARDOWN_GRACE_S
    for inst in stopped:
        if inst.state.launcher_pid == os.getpid():
            continue  # our own session: its wait() tears down
        while launcher_alive(inst.state.launcher) and time.monotonic() < deadline:
            time.sleep(0.02)
    return [inst.state.instance_id for inst in stopped]


@dataclass
class GcReport:
    containers: list[str] = field(default_factory=list)
    instance_dirs: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _container_live(adapter: DockerAdapter, cid: str, token: str) -> bool:
    """Live = its launcher runs, or it is detached and still running."""
    if token.startswith(DETACHED_PREFIX):
        info = adapter.inspect(cid)
        return info is not None and info.running
    return launcher_alive(token)


def gc(engine_urls: tuple[str | None, ...] = (None,), base: Path | None = None) -> GcReport:
    """Remove what dead launchers left: containers, provider state (X11 cookies revoked,
    Wayland dirs, sockets), instance dirs and empty app cgroups. Safe while apps run."""
    report = GcReport()
    base = instances.instances_dir(os.geteuid()) if base is None else base
    seen = sweep_instances(base, report)
    instances.remove_dangling_links(base)
    # Containers whose launcher died before the instance dir named them (or whose dir is gone).
    urls = tuple(dict.fromkeys((*engine_urls, *seen)))
    sweep_containers(urls, report)
    sweep_app_networks(urls, report)
    sweep_app_cgroups(report)
    return report


def sweep_instances(base: Path, report: GcReport) -> tuple[str | None, ...]:
    """Collect every instance whose launcher is gone; returns the engines the instances name."""
    urls: dict[str | None, None] = {}
    for inst in instances.list_instances(base):
        urls[inst.state.engine] = None
        if inst.drift.launcher_unknown:
            # nothing says whether its launcher still runs: removing it could break a live app
            report.problems.append(f"{inst.path.name}: {inst.drift}: left in place")
            continue
        try:
            _collect_instance(inst, report)
        except SandboxError as exc:
            report.problems.append(f"{inst.path.name}: {exc}")
    return tuple(urls)


def _collect_instance(inst: instances.Instance, report: GcReport) -> None:
    from sandbox.providers.registry import collect_instance

    s = inst.state
    adapter = DockerAdapter.from_env(s.engine)
    if s.container_id and _container_live(adapter, s.container_id, s.launcher):
        return
    if not s.container_id and launcher_alive(s.launcher):
        return  # a launch in progress
    if s.container_id and adapter.remove(s.container_id):
        report.containers.append(s.container_id[:12])
    collect_instance(inst.path, Path(s.xauthority) if s.xauthority else None)
    instances.remove_instance_dir(inst)
    report.instance_dirs.append(inst.path.name)


def sweep_containers(engine_urls: tuple[str | None, ...], report: GcReport) -> None:
    """Remove managed containers whose launcher is gone, on each engine."""
    for url in engine_urls:
        try:
            adapter = DockerAdapter.from_env(url)
            for c in adapter.containers_with_label(LABEL_MANAGED, "1"):
                token = c.labels.get(LABEL_LAUNCHER, "")
                if not _container_live(adapter, c.id, token) and adapter.remove(c.id):
                    report.containers.append(c.id[:12])
        except SandboxError as exc:
            report.problems.append(f"engine {url or 'default'}: {exc}")


def sweep_app_networks(engine_urls: tuple[str | None, ...], report: GcReport) -> None:
    """Remove the app networks no container uses; an app whose lock is held is left alone."""
    for url in engine_urls:
        try:
            for net in app_network.leftovers(DockerAdapter.from_env(url), os.geteuid()):
                if net.remove_if_unused(wait=False):
                    report.networks.append(net.name)
        except SandboxError as exc:
            report.problems.append(f"engine {url or 'default'}: {exc}")


def sweep_app_cgroups(report: GcReport) -> None:
    """Remove the app parents no instance uses; an app whose lock is held is left alone."""
    for kind in app_cgroup.KINDS:
        try:
            for cgroup in kind.present(os.geteuid()):
                if cgroup.remove_if_unused(wait=False):
                    report.cgroups.append(cgroup.name)
        except SandboxError as exc:
            report.problems.append(str(exc))
