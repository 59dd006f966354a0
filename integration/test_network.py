"""The network grant from inside real containers, on Docker and Podman: `network = false` is
loopback only; `network = true` is the app's own network, fenced from other apps and from the
host's services on its gateway, reaching an outside host through NAT; gc removes leftovers.

The "outside" is a network namespace this test makes (a veth pair routed from the host), with a
server bound to its own end only: an app reaches it the way it reaches the internet, through the
host's forwarding and the engine's NAT. Every target is an address this test created (its
containers, its namespace, the bridges of its app networks); every attempt is bounded.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sandbox
from integration.components import engine_get, require_binary, wait_until
from integration.containers import plan_as_labelled
from integration.test_runtime import _build as build_image
from sandbox.engine.adapter import BRIDGE_NAME_OPTION, DockerAdapter
from sandbox.host import names, netfilter
from sandbox.runtime import gc
from sandbox.runtime.session import Session

TOKEN = secrets.token_hex(3)
APP_A = f"org.sandboxtest.NetA{TOKEN}"
APP_B = f"org.sandboxtest.NetB{TOKEN}"
APP_OFF = f"org.sandboxtest.NetOff{TOKEN}"
PORT = 18080  # the apps' own servers, inside their containers
GW_PORT = 18081  # the host-side servers this test binds to each app bridge's gateway
OUT_PORT = 18082  # the outside server in the test's namespace
CONNECT_TIMEOUT_S = 2

# Inside the app: serve PORT until told "quit" (or 60 s), answering who we are.
SERVER = textwrap.dedent(
    f"""\
    import socket, sys, time
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", {PORT})); s.listen(8); s.settimeout(1)
    print("listening", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            c, peer = s.accept()
        except TimeoutError:
            continue
        data = c.recv(16)
        c.sendall(b"hello " + sys.argv[1].encode()); c.close()
        if data == b"quit":
            break
    """
)

# Inside the app: the interfaces, the routes, then one bounded connect per HOST:PORT argument.
PROBE = textwrap.dedent(
    f"""\
    import os, socket, sys
    print("ifaces", ",".join(sorted(os.listdir("/sys/class/net"))))
    with open("/proc/net/route") as f:
        print("routes", len(f.read().splitlines()) - 1)
    for target in sys.argv[1:]:
        host, port = target.rsplit(":", 1)
        try:
            c = socket.create_connection((host, int(port)), timeout={CONNECT_TIMEOUT_S})
            c.sendall(b"probe")
            print(target, "ok", c.recv(64).decode(errors="replace"))
            c.close()
        except OSError as e:
            print(target, "fail", type(e).__name__)
    """
)


@dataclass(frozen=True)
class Engine:
    name: str
    url: str
    images: dict[str, str]


def _manifest(app_id: str, network: bool) -> str:
    return textwrap.dedent(
        f"""\
        manifest-version = 1
        [app]
        id = "{app_id}"
        name = "Network test"
        version = "1.0"
        command = ["/usr/bin/python3", "-c"]
        [capabilities]
        network = {"true" if network else "false"}
        """
    )


def _images(engine: str, base: str, tmp: Path) -> dict[str, str]:
    return {
        app: build_image(
            engine, base, f"sandbox-test/net-{app.rsplit('.', 1)[-1].lower()}",
            _manifest(app, app != APP_OFF), tmp,
        )
        for app in (APP_A, APP_B, APP_OFF)
    }  # fmt: skip


def _remove_images(engine: str, images: dict[str, str]) -> None:
    subprocess.run([engine, "rmi", "-f", *images.values()], capture_output=True, check=False)


@pytest.fixture(scope="module")
def docker_net(
    docker_client_url: str, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    images = _images("docker", base_image, tmp_path_factory.mktemp("net-docker"))
    try:
        yield Engine("docker", docker_client_url, images)
    finally:
        _remove_images("docker", images)


@pytest.fixture(scope="module")
def podman_net(
    docker_client_url: str,
    podman_client_url: str,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Engine]:
    require_binary("podman")  # `podman build` shares the rootful service's store
    with (
        DockerAdapter.from_env(docker_client_url) as dock,
        DockerAdapter.from_env(podman_client_url) as pod,
    ):
        base_id = dock.images.details(base_image)
        assert base_id is not None
        loaded = pod.images.details(base_id.id) is None
        if loaded:  # the base is not in Podman's store: bring it over from Docker's
            pod.images.load_stream(dock.images.save_stream(base_id.id))
        try:
            images = _images("podman", base_id.id, tmp_path_factory.mktemp("net-podman"))
            try:
                yield Engine("podman", podman_client_url, {k: f"localhost/{v}" for k, v in
                                                           images.items()})  # fmt: skip
            finally:
                _remove_images("podman", images)
        finally:
            if loaded:
                with contextlib.suppress(Exception):
                    pod.images.remove(base_id.id)


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"{request.param}_net")  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _private_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


# --- helpers --------------------------------------------------------------------------------------


@dataclass
class Running:
    session: Session
    out: io.BytesIO


def _start(eng: Engine, app: str, *args: str) -> Running:
    out = io.BytesIO()
    prepared = plan_as_labelled(eng.images[app], eng.url)
    session = sandbox.launch(prepared, args=args, stdio=sandbox.Stdio(stdout=out, stderr=out))
    return Running(session, out)


def _serve(eng: Engine, app: str) -> Running:
    r = _start(eng, app, SERVER, app)
    wait_until(lambda: b"listening" in r.out.getvalue(), timeout=20, what=f"{app} listening")
    return r


def _probe(eng: Engine, app: str, *targets: str) -> dict[str, str]:
    r = _start(eng, app, PROBE, *targets)
    code = r.session.wait()
    text = r.out.getvalue().decode()
    assert code == 0, text
    lines = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    return lines


def _container_ip(eng: Engine, cid: str, network: str) -> str:
    status, body = engine_get(eng.url, f"/containers/{cid}/json")
    assert status == 200
    nets = json.loads(body)["NetworkSettings"]["Networks"]
    assert list(nets) == [network], nets  # its own network only, never the default bridge
    return str(nets[network]["IPAddress"])


def _connect(host: str, port: int, data: bytes = b"probe") -> str:
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as c:
        c.sendall(data)
        return c.recv(64).decode()


@contextlib.contextmanager
def _host_server(address: str, port: int) -> Iterator[list[str]]:
    """A TCP server on the host bound to `address` only (a gateway); yields the peers it saw."""
    seen: list[str] = []
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(8)
    s.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                c, peer = s.accept()
            except OSError:
                continue
            seen.append(peer[0])
            with c:
                c.sendall(b"host service")

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join(timeout=2)
        s.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def _outside() -> Iterator[tuple[str, str]]:
    """A namespace routed from the host with a server on its own end; yields its HOST:PORT and
    the host's end of the link (the source address NAT gives the apps' connections)."""
    require_binary("ip")
    ns, host_if, ns_if = f"sbxt-{TOKEN}", f"snto{TOKEN}", f"snti{TOKEN}"
    octet = 200 + secrets.randbelow(50)
    host_ip, ns_ip = f"10.254.{octet}.1", f"10.254.{octet}.2"
    server = textwrap.dedent(
        f"""\
        import socket, time
        s = socket.socket(); s.bind(("{ns_ip}", {OUT_PORT})); s.listen(8); s.settimeout(1)
        print("listening", flush=True)
        end = time.monotonic() + 90
        while time.monotonic() < end:
            try:
                c, peer = s.accept()
            except TimeoutError:
                continue
            c.sendall(b"outside saw " + peer[0].encode()); c.close()
        """
    )
    proc = None
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", server],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield f"{ns_ip}:{OUT_PORT}", host_ip
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _fence_rules(bridge: str) -> list[str]:
    out = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True, check=True)
    # ours only: Podman's CNI firewall plugin keeps its own CNI-ISOLATION rules per bridge
    return [ln for ln in out.stdout.splitlines() if bridge in ln and netfilter.COMMENT in ln]


def _quit(r: Running, ip: str) -> None:
    with contextlib.suppress(OSError):
        _connect(ip, PORT, b"quit")
    with contextlib.suppress(Exception):
        r.session.stop(timeout_s=1)
    r.session.wait()


# --- tests ----------------------------------------------------------------------------------


def test_no_network_is_loopback_only(engine: Engine) -> None:
    a = _serve(engine, APP_A)
    a_ip = ""
    try:
        a_ip = _container_ip(engine, a.session.container_id, names.app_network_name(APP_A))
        assert _connect(a_ip, PORT).startswith("hello")  # it is there to be reached
        got = _probe(engine, APP_OFF, f"{a_ip}:{PORT}")
        assert got["ifaces"] == "lo"
        assert got["routes"] == "0"
        assert got[f"{a_ip}:{PORT}"].startswith("fail")
    finally:
        _quit(a, a_ip)
    with DockerAdapter.from_env(engine.url) as adapter:
        assert adapter.inspect_network(names.app_network_name(APP_OFF)) is None


def test_networked_apps_are_fenced_and_reach_the_outside(engine: Engine) -> None:
    net_a, net_b = names.app_network_name(APP_A), names.app_network_name(APP_B)
    adapter = DockerAdapter.from_env(engine.url)
    with _outside() as (outside, host_side):
        a = _serve(engine, APP_A)
        b = None
        a_ip = b_ip = ""
        try:
            b = _serve(engine, APP_B)
            a_ip = _container_ip(engine, a.session.container_id, net_a)
            b_ip = _container_ip(engine, b.session.container_id, net_b)
            info_a, info_b = adapter.inspect_network(net_a), adapter.inspect_network(net_b)
            assert info_a is not None and info_b is not None
            assert info_a.labels[names.LABEL_MANAGED] == "1"
            assert info_a.labels[names.LABEL_APP_ID] == APP_A
            gw_a, gw_b = info_a.gateways[0], info_b.gateways[0]
            assert gw_a != gw_b and info_a.subnets != info_b.subnets  # separate bridges
            assert _fence_rules(netfilter.app_bridge_name(APP_A))
            # gc while both run leaves their networks alone
            gc.gc((engine.url,))
            assert adapter.inspect_network(net_a) is not None
            with _host_server(gw_a, GW_PORT) as seen_a, _host_server(gw_b, GW_PORT) as seen_b:
                # controls: each server answers the host, so a failure below is the fence
                assert _connect(a_ip, PORT) == f"hello {APP_A}"
                assert _connect(gw_a, GW_PORT) == "host service"
                seen_a.clear()
                got = _probe(
                    engine, APP_B,
                    f"{a_ip}:{PORT}", f"{gw_a}:{GW_PORT}", f"{gw_b}:{GW_PORT}",
                    f"{b_ip}:{PORT}", outside,
                )  # fmt: skip
                back = _probe(engine, APP_A, f"{b_ip}:{PORT}", f"{gw_a}:{GW_PORT}")
                assert not seen_a and not seen_b  # no app connection reached a host service
            assert got[f"{a_ip}:{PORT}"].startswith("fail"), got  # another app
            assert got[f"{gw_a}:{GW_PORT}"].startswith("fail"), got  # another bridge's gateway
            assert got[f"{gw_b}:{GW_PORT}"].startswith("fail"), got  # its own gateway
            assert back[f"{b_ip}:{PORT}"].startswith("fail"), back
            assert back[f"{gw_a}:{GW_PORT}"].startswith("fail"), back
            assert got[f"{b_ip}:{PORT}"] == f"ok hello {APP_B}", got  # its own other instance
            assert got[outside] == f"ok outside saw {host_side}", got  # the outside, via NAT
            assert got["ifaces"] == "eth0,lo"
        finally:
            if b is not None:
                _quit(b, b_ip)
            _quit(a, a_ip)
    # the last instance took the network and its fence with it
    assert adapter.inspect_network(net_a) is None
    assert adapter.inspect_network(net_b) is None
    assert not _fence_rules(netfilter.app_bridge_name(APP_A))
    assert not _fence_rules(netfilter.app_bridge_name(APP_B))


def test_gc_removes_a_leftover_app_network(engine: Engine) -> None:
    app = f"org.sandboxtest.NetLeft{TOKEN}"
    name = names.app_network_name(app)
    with DockerAdapter.from_env(engine.url) as adapter:
        try:
            adapter.create_network(
                name,
                labels={names.LABEL_MANAGED: "1", names.LABEL_APP_ID: app},
                options={BRIDGE_NAME_OPTION: netfilter.app_bridge_name(app)},
            )
            assert adapter.inspect_network(name) is not None
            # a killed launcher leaves the network behind; gc finds it by its labels
            report = gc.gc((engine.url,))
            assert name in report.networks
            assert adapter.inspect_network(name) is None
        finally:
            with contextlib.suppress(Exception):
                adapter.remove_network(name)


def test_second_instance_shares_the_network(engine: Engine) -> None:
    a = _serve(engine, APP_A)
    a_ip = ""
    try:
        a_ip = _container_ip(engine, a.session.container_id, names.app_network_name(APP_A))
        first = time.monotonic()
        got = _probe(engine, APP_A, f"{a_ip}:{PORT}")
        assert got[f"{a_ip}:{PORT}"] == f"ok hello {APP_A}", (got, time.monotonic() - first)
        with DockerAdapter.from_env(engine.url) as adapter:
            # the probe's instance ended, the server's still runs: the network stays
            assert adapter.inspect_network(names.app_network_name(APP_A)) is not None
    finally:
        _quit(a, a_ip)
