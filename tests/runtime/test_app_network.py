"""The app network: its names, the create body's NetworkMode, and its lifecycle under the app lock
(a fake engine records the calls; the fence's iptables runs are recorded, never executed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.engine.adapter import BRIDGE_NAME_OPTION, DockerAdapter, NetworkInfo
from sandbox.errors import LaunchError, PolicyError
from sandbox.host import names, netfilter
from sandbox.policy.facts import DockerFacts, HostFacts
from sandbox.policy.manifest import AppInfo
from sandbox.policy.plan import (
    CgroupDriverName,
    CgroupParent,
    Labels,
    LaunchPlan,
    Limits,
    NetworkMode,
    UserSpec,
    baseline_hardening,
)
from sandbox.providers.grant import Grant
from sandbox.runtime import app_network, gc
from sandbox.runtime.app_lock import AppLock
from sandbox.runtime.compile import LaunchTarget, compile
from sandbox.runtime.container_body import create_body

APP = "org.sandboxtest.Net"
OTHER = "org.sandboxtest.Other"


@pytest.fixture(autouse=True)
def _runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))


# --- names ---------------------------------------------------------------------------------------


@given(st.from_regex(names.APP_ID_RE, fullmatch=True).filter(names.is_valid_app_id))
def test_network_and_bridge_names_round_trip(app_id: str) -> None:
    net = names.app_network_name(app_id)
    assert net == f"sandbox-{app_id}" and names.app_id_of_network(net) == app_id
    bridge = netfilter.app_bridge_name(app_id)
    assert len(bridge) == 15 and bridge.startswith("sbx")  # IFNAMSIZ - 1


def test_names_refuse_what_they_never_make() -> None:
    assert names.app_id_of_network("bridge") is None
    assert names.app_id_of_network("sandbox-not-an-id") is None
    with pytest.raises(PolicyError):
        names.app_network_name("bad id")
    assert netfilter.app_bridge_name(APP) != netfilter.app_bridge_name(OTHER)


# --- the body -----------------------------------------------------------------------------------


def _plan(network: NetworkMode) -> LaunchPlan:
    return LaunchPlan(
        app=AppInfo(APP, "Net", "1", ("/bin/app",)),
        statuses=(),
        hardening=dataclasses.replace(baseline_hardening(UserSpec(1000, 1000)), network=network),
        limits=Limits(),
        labels=Labels(APP, "1"),
        cgroup_parent=CgroupParent(CgroupDriverName.CGROUPFS, f"/sandbox/{APP}"),
    )


TARGET = LaunchTarget(image="net:1", launcher="1:2", instance_dir="/run/x")


def test_the_body_names_the_app_network_never_the_default_bridge() -> None:
    spec = compile(_plan(NetworkMode.APP), Grant(), TARGET)
    assert spec.network_name == f"sandbox-{APP}"
    assert create_body(spec)["HostConfig"]["NetworkMode"] == f"sandbox-{APP}"
    off = compile(_plan(NetworkMode.NONE), Grant(), TARGET)
    assert off.network_name is None
    assert create_body(off)["HostConfig"]["NetworkMode"] == "none"


@pytest.mark.parametrize("mode", [NetworkMode.HOST, NetworkMode.APP])
def test_the_body_refuses_host_and_an_unnamed_app_network(mode: NetworkMode) -> None:
    spec = dataclasses.replace(compile(_plan(NetworkMode.NONE), Grant(), TARGET), network=mode)
    with pytest.raises(LaunchError, match="never used"):
        create_body(spec)


# --- the lifecycle --------------------------------------------------------------------------------


class FakeEngine:
    """Networks by name; `attached` are the containers the engine lists on one."""

    url = "unix:///fake.sock"

    def __init__(self) -> None:
        self.nets: dict[str, NetworkInfo] = {}
        self.created: list[tuple[str, Mapping[str, str], Mapping[str, str]]] = []
        self.steal_first_create = False  # another launch creates it between inspect and create

    def _info(
        self, name: str, labels: Mapping[str, str], containers: tuple[str, ...] = ()
    ) -> NetworkInfo:
        return NetworkInfo(f"id-{name}", name, dict(labels), None, ("10.9.0.1",), (), containers)

    def inspect_network(self, name: str) -> NetworkInfo | None:
        return self.nets.get(name)

    def create_network(
        self, name: str, *, labels: Mapping[str, str], options: Mapping[str, str]
    ) -> str | None:
        self.created.append((name, labels, options))
        if self.steal_first_create:
            self.steal_first_create = False
            self.nets[name] = self._info(name, labels)
            return None
        if name in self.nets:
            return None
        self.nets[name] = self._info(name, labels)
        return self.nets[name].id

    def remove_network(self, name: str) -> bool | None:
        info = self.nets.get(name)
        if info is None:
            return False
        if info.containers:
            return None
        del self.nets[name]
        return True

    def networks_with_label(self, key: str, value: str | None = None) -> tuple[NetworkInfo, ...]:
        return tuple(n for n in self.nets.values() if n.labels.get(key) == value)

    def attach(self, name: str, cid: str) -> None:
        self.nets[name] = dataclasses.replace(self.nets[name], containers=(cid,))


@pytest.fixture
def fence(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, str]]:
    calls: list[tuple[str, str | None, str]] = []
    monkeypatch.setattr(netfilter, "install", lambda b, g: calls.append((b, g, "install")))
    monkeypatch.setattr(netfilter, "remove", lambda b, g: calls.append((b, g, "remove")))
    return calls


def _net(engine: FakeEngine, *, fenced: bool = True) -> app_network.AppNetwork:
    return app_network.AppNetwork(cast(DockerAdapter, engine), 0, APP, fenced)


def test_first_instance_creates_labelled_and_fenced_later_ones_share(
    fence: list[tuple[str, str | None, str]],
) -> None:
    engine = FakeEngine()
    first = _net(engine).acquire()
    again = _net(engine).acquire()
    assert first == again and len(engine.created) == 1
    name, labels, options = engine.created[0]
    assert name == f"sandbox-{APP}"
    assert labels == {names.LABEL_MANAGED: "1", names.LABEL_APP_ID: APP}
    assert options == {BRIDGE_NAME_OPTION: netfilter.app_bridge_name(APP)}
    bridge = netfilter.app_bridge_name(APP)
    assert fence == [(bridge, "10.9.0.1", "install")] * 2  # idempotent, checked every launch


def test_a_create_lost_to_another_launch_uses_its_network(
    fence: list[tuple[str, str | None, str]],
) -> None:
    engine = FakeEngine()
    engine.steal_first_create = True
    assert _net(engine).acquire().name == f"sandbox-{APP}"
    assert len(engine.nets) == 1


def test_unfenced_launch_installs_no_rules(fence: list[tuple[str, str | None, str]]) -> None:
    engine = FakeEngine()
    net = _net(engine, fenced=False)
    net.acquire()
    assert net.remove_if_unused()
    assert fence == []


def test_the_last_instance_removes_it_and_its_fence(
    fence: list[tuple[str, str | None, str]],
) -> None:
    engine = FakeEngine()
    net = _net(engine)
    net.acquire()
    engine.attach(net.name, "c1")  # another instance still runs on it
    assert not net.remove_if_unused()
    assert net.name in engine.nets and fence[-1][2] == "install"
    engine.nets[net.name] = dataclasses.replace(engine.nets[net.name], containers=())
    assert net.remove_if_unused()
    assert net.name not in engine.nets
    assert fence[-1] == (netfilter.app_bridge_name(APP), "10.9.0.1", "remove")
    assert net.remove_if_unused()  # already gone: fine


def test_removal_waits_for_a_launch_holding_the_lock(
    fence: list[tuple[str, str | None, str]],
) -> None:
    engine = FakeEngine()
    net = _net(engine)
    launch = AppLock(0, APP)
    assert launch.acquire(shared=True)
    try:
        net.acquire()  # under the shared lock, as session.launch does
        assert not net.remove_if_unused(wait=False)  # gc: a launch in progress
        assert net.name in engine.nets
    finally:
        launch.release()
    assert net.remove_if_unused(wait=False)


def test_gc_finds_only_the_networks_it_made(
    monkeypatch: pytest.MonkeyPatch, fence: list[tuple[str, str | None, str]]
) -> None:
    engine = FakeEngine()
    _net(engine).acquire()
    managed = {names.LABEL_MANAGED: "1", names.LABEL_APP_ID: OTHER}
    engine.nets["sandbox-impostor"] = engine._info("sandbox-impostor", managed)
    engine.nets[f"sandbox-{OTHER}"] = engine._info(f"sandbox-{OTHER}", managed, ("c",))
    monkeypatch.setattr(DockerAdapter, "from_env", classmethod(lambda cls, url=None: engine))
    report = gc.GcReport()
    gc.sweep_app_networks((None,), report)
    assert report.networks == [f"sandbox-{APP}"]  # in use and unmatched names stay
    assert set(engine.nets) == {"sandbox-impostor", f"sandbox-{OTHER}"}


def test_for_plan_decides_the_fence_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = cast(DockerAdapter, FakeEngine())
    monkeypatch.setattr(netfilter, "firewall_problem", lambda **_: None)
    plan_facts = _facts(DockerFacts(False, "probe timed out"))
    assert app_network.for_plan(_plan(NetworkMode.NONE), plan_facts, engine, 0) is None
    net = app_network.for_plan(_plan(NetworkMode.APP), plan_facts, engine, 0)
    assert net is not None and net.fenced  # a timed-out probe does not unfence the launch
    monkeypatch.setattr(netfilter, "firewall_problem", lambda **_: "needs root")
    net = app_network.for_plan(_plan(NetworkMode.APP), plan_facts, engine, 0)
    assert net is not None and not net.fenced


def _facts(docker: DockerFacts) -> HostFacts:
    from tests.policy.engine_support import desktop

    return dataclasses.replace(desktop(), docker=docker)
