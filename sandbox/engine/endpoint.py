"""Where the engine listens (DOCKER_HOST, contexts, default and Podman sockets); never connects."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sandbox.host.bounded_io import Missing

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


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def endpoint_from_env(env: Mapping[str, str], base_url: str | None = None) -> Endpoint | Missing:
    """The endpoint `base_url` names, else the one the user's environment points at."""
    if base_url:
        return parse_host_url(base_url, "--docker-host", tls=bool(env.get("DOCKER_TLS_VERIFY")))
    home = env.get("HOME") or os.path.expanduser("~")
    return resolve_endpoint(env, home=home, read_text=read_text, exists=os.path.exists)
