"""Docker probe: endpoint resolution, /version + /info parsing, HTTP on local fake sockets."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine import endpoint
from sandbox.host.bounded_io import Deadline, Missing
from sandbox.policy.facts import CgroupDriver, EngineKind
from sandbox.probes import docker

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((DATA / name).read_text())
    return value


ENDPOINT = endpoint.Endpoint(
    "unix:///var/run/docker.sock", "default", unix_path="/var/run/docker.sock"
)


# --- parsing -------------------------------------------------------------------------------


def test_docker_20_10_is_docker_with_its_versions_runtimes_and_cgroups() -> None:
    version, info = load("docker-20.10-version.json"), load("docker-20.10-info.json")
    facts = docker.parse_engine(version, info, ENDPOINT)
    assert facts.available and facts.reason is None
    assert facts.engine is EngineKind.DOCKER
    assert facts.version == version["Version"]
    assert facts.api_version == version["ApiVersion"] == "1.41"
    assert facts.cgroup_driver is CgroupDriver(info["CgroupDriver"])
    assert facts.cgroup_version == int(info["CgroupVersion"])
    assert set(facts.runtimes) == set(info["Runtimes"]) and "runc" in facts.runtimes
    assert facts.security_options == tuple(info["SecurityOptions"])
    assert facts.rootless is False
    assert facts.cdi_devices == () and facts.cdi_spec_dirs == ()
    assert (facts.endpoint, facts.source) == (ENDPOINT.url, ENDPOINT.source)


def test_podman_4_3_is_recognised_from_its_components() -> None:
    version, info = load("podman-4.3-version.json"), load("podman-4.3-info.json")
    # Podman 4.3 leaves "Podman" out of Platform.Name: only Components says it
    assert "podman" not in version["Platform"]["Name"].lower()
    facts = docker.parse_engine(version, info, ENDPOINT)
    assert facts.engine is EngineKind.PODMAN
    assert facts.version == "4.3.1"
    assert facts.api_version == version["ApiVersion"]
    assert facts.cgroup_driver is CgroupDriver.CGROUPFS
    assert set(facts.runtimes) == set(info["Runtimes"])


def test_podman_named_in_platform_only_is_podman() -> None:
    version = {"Platform": {"Name": "Podman Engine"}, "Version": "5.0.0", "ApiVersion": "1.41"}
    assert docker.engine_kind(version) is EngineKind.PODMAN
    assert docker.engine_kind({"Platform": {"Name": "Docker Engine - Community"}}) is (
        EngineKind.DOCKER
    )


@pytest.mark.parametrize(
    "change",
    [
        {"SecurityOptions": ["name=seccomp,profile=default", "name=rootless"]},
        {"Rootless": True},
        {"host": {"security": {"rootless": True}}},
    ],
    ids=["security-option", "podman-compat", "libpod-shape"],
)
def test_rootless_is_read_from_every_shape(change: dict[str, Any]) -> None:
    info = copy.deepcopy(load("podman-4.3-info.json"))
    info.update(change)
    assert docker.parse_engine(load("podman-4.3-version.json"), info, ENDPOINT).rootless


def test_cdi_devices_and_spec_dirs_when_the_engine_reports_them() -> None:
    info = copy.deepcopy(load("docker-20.10-info.json"))
    info["CDISpecDirs"] = ["/etc/cdi", "/var/run/cdi"]
    info["DiscoveredDevices"] = [
        {"Source": "cdi", "ID": "nvidia.com/gpu=0"},
        {"Source": "cdi", "ID": "nvidia.com/gpu=all"},
        {"Source": "other", "ID": "ignored"},
    ]
    facts = docker.parse_engine(load("docker-20.10-version.json"), info, ENDPOINT)
    assert facts.cdi_devices == ("nvidia.com/gpu=0", "nvidia.com/gpu=all")
    assert facts.cdi_spec_dirs == ("/etc/cdi", "/var/run/cdi")


def test_odd_values_do_not_break_parsing() -> None:
    info = {"CgroupDriver": "none", "CgroupVersion": "", "Runtimes": None, "SecurityOptions": None}
    facts = docker.parse_engine({}, info, ENDPOINT)
    assert facts.available
    assert facts.cgroup_driver is None and facts.cgroup_version is None
    assert facts.runtimes == () and facts.security_options == ()


# --- endpoint resolution -------------------------------------------------------------------


def resolve(
    env: dict[str, str], home: Path, existing: frozenset[str] = frozenset()
) -> endpoint.Endpoint | Missing:
    """Resolve with real files under `home`; host paths exist only when listed (hermetic)."""

    def read_text(path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    def exists(path: str) -> bool:
        return path in existing or (path.startswith(str(home)) and os.path.exists(path))

    return endpoint.resolve_endpoint(env, home=str(home), read_text=read_text, exists=exists)


def write_context(config_dir: Path, name: str, host: str) -> Path:
    meta = (
        config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    )
    meta.parent.mkdir(parents=True)
    meta.write_text(
        json.dumps(
            {
                "Name": name,
                "Metadata": {},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}},
            }
        )
    )
    return meta


def test_docker_host_wins(tmp_path: Path) -> None:
    write_context(tmp_path / ".docker", "remote", "unix:///ctx.sock")
    env = {"DOCKER_HOST": "unix:///run/user/1000/docker.sock", "DOCKER_CONTEXT": "remote"}
    ep = resolve(env, tmp_path)
    assert isinstance(ep, endpoint.Endpoint)
    assert (ep.url, ep.source, ep.unix_path) == (
        env["DOCKER_HOST"],
        "DOCKER_HOST",
        "/run/user/1000/docker.sock",
    )


def test_context_from_docker_context_env(tmp_path: Path) -> None:
    write_context(tmp_path / ".docker", "rootless", "unix:///run/user/1000/docker.sock")
    ep = resolve({"DOCKER_CONTEXT": "rootless"}, tmp_path)
    assert isinstance(ep, endpoint.Endpoint)
    assert ep.source == "context rootless"
    assert ep.unix_path == "/run/user/1000/docker.sock"


def test_context_from_config_json_and_docker_config(tmp_path: Path) -> None:
    config_dir = tmp_path / "elsewhere"
    write_context(config_dir, "colima", "unix:///home/u/.colima/docker.sock")
    (config_dir / "config.json").write_text(json.dumps({"currentContext": "colima"}))
    ep = resolve({"DOCKER_CONFIG": str(config_dir)}, tmp_path / "home")
    assert isinstance(ep, endpoint.Endpoint)
    assert (ep.source, ep.unix_path) == ("context colima", "/home/u/.colima/docker.sock")


def test_a_missing_context_is_a_reason_naming_its_meta_path(tmp_path: Path) -> None:
    ep = resolve({"DOCKER_CONTEXT": "gone"}, tmp_path)
    assert isinstance(ep, Missing)
    assert "gone" in ep.reason
    assert hashlib.sha256(b"gone").hexdigest() in ep.reason


def test_default_context_means_the_default_socket(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text('{"currentContext": "default"}')
    ep = resolve({}, tmp_path, existing=frozenset({endpoint.DEFAULT_SOCKET}))
    assert isinstance(ep, endpoint.Endpoint)
    assert (ep.source, ep.unix_path) == ("default", endpoint.DEFAULT_SOCKET)


def test_podman_sockets_are_the_last_resort(tmp_path: Path) -> None:
    user_sock = "/run/user/1000/podman/podman.sock"
    ep = resolve({"XDG_RUNTIME_DIR": "/run/user/1000"}, tmp_path, existing=frozenset({user_sock}))
    assert isinstance(ep, endpoint.Endpoint)
    assert (ep.source, ep.unix_path) == ("podman", user_sock)
    ep = resolve({}, tmp_path, existing=frozenset({endpoint.SYSTEM_PODMAN_SOCKET}))
    assert isinstance(ep, endpoint.Endpoint) and ep.unix_path == endpoint.SYSTEM_PODMAN_SOCKET
    nothing = resolve({}, tmp_path)
    assert isinstance(nothing, Missing)
    assert endpoint.DEFAULT_SOCKET in nothing.reason and "Podman" in nothing.reason


def test_tcp_endpoints_plain_and_tls() -> None:
    ep = endpoint.parse_host_url("tcp://10.0.0.5:2375", "DOCKER_HOST", tls=False)
    assert isinstance(ep, endpoint.Endpoint)
    assert (ep.tcp_host, ep.tcp_port, ep.unix_path) == ("10.0.0.5", 2375, None)
    no_port = endpoint.parse_host_url("tcp://engine", "DOCKER_HOST", tls=False)
    assert isinstance(no_port, endpoint.Endpoint) and no_port.tcp_port == endpoint.DEFAULT_TCP_PORT
    tls = endpoint.parse_host_url("tcp://10.0.0.5:2376", "DOCKER_HOST", tls=True)
    assert isinstance(tls, Missing) and "TLS endpoints not probed" in tls.reason


def test_docker_tls_verify_env_applies_to_docker_host(tmp_path: Path) -> None:
    ep = resolve({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1"}, tmp_path)
    assert isinstance(ep, Missing) and "TLS endpoints not probed" in ep.reason


@pytest.mark.parametrize("url", ["ssh://me@host", "npipe:////./pipe/docker_engine", "fd://"])
def test_other_schemes_are_reasons(url: str) -> None:
    ep = endpoint.parse_host_url(url, "DOCKER_HOST", tls=False)
    assert isinstance(ep, Missing) and "not probed" in ep.reason


# --- the HTTP path against a local fake engine --------------------------------------------


class FakeEngine:
    """A unix-socket HTTP server answering /version and /info from samples (or an error)."""

    def __init__(self, path: Path, routes: dict[str, tuple[int, bytes]]) -> None:
        self.path = path
        self.routes = routes
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.server.settimeout(5)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                path = head.split(b" ")[1].decode()
                status, body = self.routes.get(path, (404, b'{"message":"page not found"}'))
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "engine.sock"


def test_query_reads_version_and_info_over_one_unix_connection(engine_socket: Path) -> None:
    routes = {
        "/version": (200, (DATA / "podman-4.3-version.json").read_bytes()),
        "/info": (200, (DATA / "podman-4.3-info.json").read_bytes()),
    }
    engine = FakeEngine(engine_socket, routes)
    try:
        ep = endpoint.Endpoint(
            f"unix://{engine_socket}", "DOCKER_HOST", unix_path=str(engine_socket)
        )
        facts = docker.query(ep, Deadline(1.0))
    finally:
        engine.close()
    assert facts.available, facts.reason
    assert facts.engine is EngineKind.PODMAN and facts.source == "DOCKER_HOST"


def test_http_errors_and_garbage_are_reasons(engine_socket: Path) -> None:
    engine = FakeEngine(engine_socket, {"/version": (500, b'{"message":"boom"}')})
    try:
        ep = endpoint.Endpoint(
            f"unix://{engine_socket}", "DOCKER_HOST", unix_path=str(engine_socket)
        )
        facts = docker.query(ep, Deadline(1.0))
    finally:
        engine.close()
    assert not facts.available and facts.reason is not None
    assert "/version" in facts.reason and "500" in facts.reason


def test_not_json_is_a_reason(engine_socket: Path) -> None:
    engine = FakeEngine(engine_socket, {"/version": (200, b"<html>")})
    try:
        ep = endpoint.Endpoint(
            f"unix://{engine_socket}", "DOCKER_HOST", unix_path=str(engine_socket)
        )
        facts = docker.query(ep, Deadline(1.0))
    finally:
        engine.close()
    assert not facts.available and facts.reason is not None and "JSON" in facts.reason


def test_probe_with_no_socket_names_the_path(tmp_path: Path) -> None:
    facts = docker.probe(
        {"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "HOME": str(tmp_path)}, 1.0
    )
    assert not facts.available and facts.reason is not None
    assert f"{tmp_path}/none.sock" in facts.reason
    assert facts.source == "DOCKER_HOST"


def test_probe_with_nothing_listening_says_refused(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # a socket file left by a crashed engine
    facts = docker.probe({"DOCKER_HOST": f"unix://{path}", "HOME": str(tmp_path)}, 1.0)
    assert not facts.available and facts.reason is not None and "refused" in facts.reason
