"""Docker/Podman engine probe: raw HTTP on the engine socket, with a deadline; no docker-py."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from sandbox.policy.facts import CgroupDriver, DockerFacts, EngineKind
from sandbox.probes._io import Deadline, Missing, describe_os_error

DEFAULT_SOCKET = "/var/run/docker.sock"
SYSTEM_PODMAN_SOCKET = "/run/podman/podman.sock"
DEFAULT_TCP_PORT = 2375


@dataclass(frozen=True)
class Endpoint:
    """Where the engine listens and why that place was chosen (docker CLI order)."""

    url: str  # "unix:///var/run/docker.sock" or "tcp://host:2375"
    source: str  # "DOCKER_HOST", "context NAME", "default", "podman"
    unix_path: str | None = None
    tcp_host: str | None = None
    tcp_port: int | None = None

    @property
    def where(self) -> str:
        return self.unix_path if self.unix_path is not None else f"{self.tcp_host}:{self.tcp_port}"


def parse_host_url(url: str, source: str, *, tls: bool) -> Endpoint | Missing:
    """Turn a DOCKER_HOST-style URL into an Endpoint; TLS, ssh and fd endpoints are not probed."""
    if url.startswith("unix://"):
        path = url[len("unix://") :]
        if not path.startswith("/"):
            return Missing(f"{source}: unix endpoint {url!r} must hold an absolute path")
        return Endpoint(url=url, source=source, unix_path=path)
    if url.startswith(("tcp://", "http://")):
        if tls:
            return Missing(
                f"{source}: {url} uses TLS (DOCKER_TLS_VERIFY); TLS endpoints not probed"
            )
        rest = url.split("://", 1)[1].split("/", 1)[0]
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            host, port_text = rest, str(DEFAULT_TCP_PORT)
        host = host.strip("[]")
        if not host or not port_text.isdigit():
            return Missing(f"{source}: cannot parse tcp endpoint {url!r}")
        return Endpoint(url=url, source=source, tcp_host=host, tcp_port=int(port_text))
    if url.startswith("https://"):
        return Missing(f"{source}: {url} uses TLS; TLS endpoints not probed")
    scheme = url.split("://", 1)[0] if "://" in url else url
    return Missing(f"{source}: {scheme!r} endpoints are not probed (only unix:// and tcp://)")


def context_meta_path(config_dir: str, name: str) -> str:
    """Where the docker CLI keeps a context's metadata: contexts/meta/<sha256(name)>/meta.json."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return os.path.join(config_dir, "contexts", "meta", digest, "meta.json")


def context_tls_dir(config_dir: str, name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return os.path.join(config_dir, "contexts", "tls", digest, "docker")


def current_context(env: Mapping[str, str], config_json: str | None) -> str | None:
    """DOCKER_CONTEXT, else config.json's currentContext; None or "default" mean the default."""
    name = env.get("DOCKER_CONTEXT", "").strip()
    if name:
        return name
    if config_json is None:
        return None
    try:
        config = json.loads(config_json)
    except ValueError:
        return None
    current = config.get("currentContext") if isinstance(config, dict) else None
    return current if isinstance(current, str) and current else None


def context_host(meta_json: str) -> str | None:
    """Endpoints.docker.Host of a context's meta.json, when it has one."""
    try:
        meta = json.loads(meta_json)
    except ValueError:
        return None
    endpoints = meta.get("Endpoints") if isinstance(meta, dict) else None
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = docker.get("Host") if isinstance(docker, dict) else None
    return host if isinstance(host, str) and host else None


def resolve_endpoint(
    env: Mapping[str, str],
    *,
    home: str,
    read_text: Callable[[str], str | None],
    exists: Callable[[str], bool],
) -> Endpoint | Missing:
    """Choose the engine endpoint as docker-py and the docker CLI do; Podman as a last resort."""
    tls = bool(env.get("DOCKER_TLS_VERIFY", ""))
    host = env.get("DOCKER_HOST", "").strip()
    if host:
        return parse_host_url(host, "DOCKER_HOST", tls=tls)

    config_dir = env.get("DOCKER_CONFIG") or os.path.join(home, ".docker")
    name = current_context(env, read_text(os.path.join(config_dir, "config.json")))
    if name is not None and name != "default":
        meta_path = context_meta_path(config_dir, name)
        meta = read_text(meta_path)
        if meta is None:
            return Missing(f"docker context {name!r} has no metadata at {meta_path}")
        url = context_host(meta)
        if url is None:
            return Missing(f"docker context {name!r} has no Endpoints.docker.Host in {meta_path}")
        ctx_tls = tls or exists(context_tls_dir(config_dir, name))
        return parse_host_url(url, f"context {name}", tls=ctx_tls)

    if exists(DEFAULT_SOCKET):
        return Endpoint(url=f"unix://{DEFAULT_SOCKET}", source="default", unix_path=DEFAULT_SOCKET)
    candidates = []
    runtime_dir = env.get("XDG_RUNTIME_DIR", "")
    if runtime_dir:
        candidates.append(os.path.join(runtime_dir, "podman", "podman.sock"))
    candidates.append(SYSTEM_PODMAN_SOCKET)
    for path in candidates:
        if exists(path):
            return Endpoint(url=f"unix://{path}", source="podman", unix_path=path)
    return Missing(
        f"no container engine: DOCKER_HOST unset, no docker context, no {DEFAULT_SOCKET}, "
        f"no Podman socket ({', '.join(candidates)})"
    )


def _text(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def engine_kind(version: Mapping[str, Any]) -> EngineKind:
    """Podman says so in /version's Components (and in Platform.Name on some releases)."""
    names: list[str] = []
    platform = version.get("Platform")
    if isinstance(platform, dict):
        names.append(str(platform.get("Name", "")))
    components = version.get("Components")
    if isinstance(components, list):
        names.extend(str(c.get("Name", "")) for c in components if isinstance(c, dict))
    return EngineKind.PODMAN if any("podman" in n.lower() for n in names) else EngineKind.DOCKER


def _security_option_names(options: tuple[str, ...]) -> set[str]:
    names = set()
    for option in options:
        for part in option.split(","):
            key, _, value = part.partition("=")
            if key == "name":
                names.add(value)
    return names


def _rootless(info: Mapping[str, Any], options: tuple[str, ...]) -> bool:
    if info.get("Rootless") is True:  # Podman's compat /info says it directly
        return True
    host = info.get("host")  # the libpod /info shape: host.security.rootless
    if isinstance(host, dict):
        security = host.get("security")
        if isinstance(security, dict) and security.get("rootless") is True:
            return True
    return "rootless" in _security_option_names(options)


def parse_engine(
    version: Mapping[str, Any], info: Mapping[str, Any], endpoint: Endpoint
) -> DockerFacts:
    """DockerFacts from the JSON of GET /version and GET /info."""
    options = tuple(o for o in (info.get("SecurityOptions") or []) if isinstance(o, str))
    runtimes_obj = info.get("Runtimes")
    runtimes = tuple(sorted(runtimes_obj)) if isinstance(runtimes_obj, dict) else ()
    driver_text = _text(info, "CgroupDriver")
    driver = CgroupDriver(driver_text) if driver_text in {d.value for d in CgroupDriver} else None
    cgroup_text = str(info.get("CgroupVersion", ""))
    discovered = info.get("DiscoveredDevices")
    cdi_devices = tuple(
        str(d["ID"])
        for d in (discovered if isinstance(discovered, list) else [])
        if isinstance(d, dict) and d.get("Source") == "cdi" and d.get("ID")
    )
    spec_dirs = info.get("CDISpecDirs")
    return DockerFacts(
        available=True,
        endpoint=endpoint.url,
        source=endpoint.source,
        engine=engine_kind(version),
        version=_text(version, "Version") or _text(info, "ServerVersion"),
        api_version=_text(version, "ApiVersion"),
        cgroup_driver=driver,
        cgroup_version=int(cgroup_text) if cgroup_text.isdigit() else None,
        rootless=_rootless(info, options),
        runtimes=runtimes,
        security_options=options,
        cdi_devices=cdi_devices,
        cdi_spec_dirs=tuple(
            d for d in (spec_dirs if isinstance(spec_dirs, list) else []) if isinstance(d, str)
        ),
    )


def _connect(endpoint: Endpoint, deadline: Deadline) -> socket.socket:
    if endpoint.unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(deadline.left())
        try:
            sock.connect(endpoint.unix_path)
        except BaseException:
            sock.close()
            raise
        return sock
    assert endpoint.tcp_host is not None and endpoint.tcp_port is not None
    return socket.create_connection((endpoint.tcp_host, endpoint.tcp_port), deadline.left())


class _BadAnswerError(Exception):
    """Internal: the engine answered, but not with what /version or /info should be."""


def _get_json(
    sock: socket.socket, reader: BinaryIO, path: str, deadline: Deadline
) -> Mapping[str, Any]:
    from sandbox.probes import _http

    sock.settimeout(deadline.left())
    _http.send_request(sock, "GET", path, None, {"Accept": "application/json"})
    response = _http.read_response(reader, "GET")
    if response.status != 200:
        raise _BadAnswerError(f"GET {path} answered HTTP {response.status} {response.reason}")
    try:
        value = json.loads(response.body)
    except ValueError as exc:
        raise _BadAnswerError(f"GET {path} did not answer JSON") from exc
    if not isinstance(value, dict):
        raise _BadAnswerError(f"GET {path} did not answer a JSON object")
    return value


def query(endpoint: Endpoint, deadline: Deadline) -> DockerFacts:
    """GET /version and /info on one keep-alive connection; every failure becomes a fact."""
    from sandbox.probes import _http  # not http.client: it imports ssl and email (~18 ms)

    def missing(reason: str) -> DockerFacts:
        return DockerFacts(False, reason, endpoint=endpoint.url, source=endpoint.source)

    try:
        sock = _connect(endpoint, deadline)
    except OSError as exc:
        return missing(describe_os_error(exc, endpoint.where, deadline.timeout))
    try:
        with sock.makefile("rb") as reader:
            version = _get_json(sock, reader, "/version", deadline)
            info = _get_json(sock, reader, "/info", deadline)
    except _BadAnswerError as exc:
        return missing(str(exc))
    except _http.ClosedError:
        return missing(f"{endpoint.where} closed the connection without answering")
    except _http.BadResponseError as exc:
        return missing(f"{endpoint.where} did not speak HTTP: {exc}")
    except OSError as exc:
        return missing(describe_os_error(exc, endpoint.where, deadline.timeout))
    finally:
        sock.close()
    return parse_engine(version, info, endpoint)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def probe(env: Mapping[str, str], timeout: float) -> DockerFacts:
    """Facts about the container engine the user's environment points at."""
    deadline = Deadline(timeout)
    home = env.get("HOME") or os.path.expanduser("~")
    endpoint = resolve_endpoint(env, home=home, read_text=_read_text, exists=os.path.exists)
    if isinstance(endpoint, Missing):
        return DockerFacts(False, endpoint.reason)
    return query(endpoint, deadline)
