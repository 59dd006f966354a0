"""Docker/Podman engine probe: raw HTTP on the engine socket, with a deadline; no docker-py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sandbox.engine.endpoint import Endpoint, endpoint_from_env
from sandbox.host.bounded_io import Deadline, Missing, describe_os_error
from sandbox.host.netfilter import firewall_problem
from sandbox.policy.facts import CgroupDriver, DockerFacts, EngineKind


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
    rootless = _rootless(info, options)
    fence = firewall_problem(rootless=rootless, local=endpoint.unix_path is not None)
    return DockerFacts(
        available=True,
        endpoint=endpoint.url,
        source=endpoint.source,
        engine=engine_kind(version),
        version=_text(version, "Version") or _text(info, "ServerVersion"),
        api_version=_text(version, "ApiVersion"),
        cgroup_driver=driver,
        cgroup_version=int(cgroup_text) if re.fullmatch("[0-9]{1,3}", cgroup_text) else None,
        rootless=rootless,
        runtimes=runtimes,
        security_options=options,
        cdi_devices=cdi_devices,
        cdi_spec_dirs=tuple(
            d for d in (spec_dirs if isinstance(spec_dirs, list) else []) if isinstance(d, str)
        ),
        network_fenced=fence is None,
        network_fence_problem=fence,
    )


def query(endpoint: Endpoint, deadline: Deadline) -> DockerFacts:
    """GET /version and /info on one keep-alive connection; every failure becomes a fact."""
    # not http.client: it imports ssl and email (~18 ms)
    from sandbox.engine import http as _http
    from sandbox.engine.bounded_get import BadAnswerError, connect, get_json

    def missing(reason: str) -> DockerFacts:
        return DockerFacts(False, reason, endpoint=endpoint.url, source=endpoint.source)

    try:
        sock = connect(endpoint, deadline)
    except OSError as exc:
        return missing(describe_os_error(exc, endpoint.where, deadline.timeout))
    try:
        with sock.makefile("rb") as reader:
            version = get_json(sock, reader, "/version", deadline)
            info = get_json(sock, reader, "/info", deadline)
    except BadAnswerError as exc:
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


def probe(env: Mapping[str, str], timeout: float) -> DockerFacts:
    """Facts about the container engine the user's environment points at."""
    deadline = Deadline(timeout)
    endpoint = endpoint_from_env(env)
    if isinstance(endpoint, Missing):
        return DockerFacts(False, endpoint.reason)
    return query(endpoint, deadline)
