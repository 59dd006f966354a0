"""The launch hot path over the raw Engine API (containers, networks, labels); never imports docker.

`import docker` costs ~170 ms, more than half a `docker run`, so `sandbox run` goes through
this client only: unversioned paths that Docker and Podman's compatible service both accept.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Mapping
from typing import Any

from sandbox.engine.error_map import engine_error
from sandbox.engine.pending_wait import PendingWait
from sandbox.engine.records import ContainerInfo, ImageConfig, ImageInfo, NetworkInfo
from sandbox.engine.transport import TIMEOUT_S, RawTransport
from sandbox.errors import LaunchError


def _q(params: Mapping[str, Any]) -> str:
    return urllib.parse.urlencode(params)


def _labels(raw: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (raw or {}).items()}


BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"  # Docker's; Podman's compat API maps it


def _network(raw: Mapping[str, Any]) -> NetworkInfo:
    """A network inspect (or list) answer; Docker 20.10 and Podman 4.3 share this shape."""
    ipam = [c for c in (raw.get("IPAM") or {}).get("Config") or () if isinstance(c, dict)]
    bridge = (raw.get("Options") or {}).get(BRIDGE_NAME_OPTION)
    return NetworkInfo(
        id=str(raw.get("Id", "")),
        name=str(raw.get("Name", "")),
        labels=_labels(raw.get("Labels")),
        bridge=str(bridge) if bridge else None,
        gateways=tuple(str(c["Gateway"]) for c in ipam if c.get("Gateway")),
        subnets=tuple(str(c["Subnet"]) for c in ipam if c.get("Subnet")),
        containers=tuple(str(k) for k in raw.get("Containers") or {}),
    )


class RawClient:
    """Images by label and one container's life (create, attach, wait, start, stop, remove)."""

    def __init__(self, transport: RawTransport, url: str) -> None:
        self._t = transport
        self.url = url

    # --- images ---------------------------------------------------------------------------------

    def image_labels(self, ref: str) -> dict[str, str]:
        """The labels of the local image `ref` ({} when it has none)."""
        return dict(self.image_config(ref).labels)

    def image_config(self, ref: str) -> ImageConfig:
        """What a container of the local image `ref` would inherit: one inspect, as for labels."""
        status, body = self._t.request("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")
        if status == 404:
            raise LaunchError(f"image {ref} not found")
        if status != 200:
            raise engine_error(f"inspect image {ref}", status, body)
        raw = json.loads(body)
        config = raw.get("Config") or {}
        volumes = config.get("Volumes") or {}
        if not isinstance(volumes, Mapping):
            raise LaunchError(f"image {ref}: the engine answered Config.Volumes={volumes!r}")
        return ImageConfig(
            id=str(raw.get("Id", "")),
            labels=_labels(config.get("Labels")),
            volumes=tuple(sorted(str(v) for v in volumes)),
            working_dir=str(config.get("WorkingDir") or ""),
        )

    def images_with_label(self, key: str) -> tuple[ImageInfo, ...]:
        path = "/images/json?" + _q({"filters": json.dumps({"label": [key]})})
        status, body = self._t.request("GET", path)
        if status != 200:
            raise engine_error("list images", status, body)
        return tuple(
            ImageInfo(
                id=str(raw.get("Id", "")),
                tags=tuple(t for t in raw.get("RepoTags") or () if t != "<none>:<none>"),
                labels=_labels(raw.get("Labels")),
                created=int(raw.get("Created") or 0),
            )
            for raw in json.loads(body) or []
        )

    # --- containers -----------------------------------------------------------------------------

    def create(self, body: Mapping[str, Any], *, name: str | None = None) -> str:
        """Create a container from an Engine API create `body` (the runtime builds it)."""
        image = body.get("Image")
        path = "/containers/create" + (f"?{_q({'name': name})}" if name else "")
        status, answer = self._t.request("POST", path, body)
        if status == 404:
            raise LaunchError(f"image {image} not found (the engine has no such image)")
        if status != 201:
            raise engine_error(f"create a container of {image}", status, answer)
        return str(json.loads(answer)["Id"])

    def attach(self, cid: str, *, stdin: bool) -> tuple[socket.socket, bytes]:
        params = {"stream": 1, "stdout": 1, "stderr": 1, "stdin": int(stdin)}
        return self._t.hijack(f"/containers/{cid}/attach?{_q(params)}")

    def wait_later(self, cid: str) -> PendingWait:
        return PendingWait(
            self._t.send_later("POST", f"/containers/{cid}/wait?condition=next-exit"), cid
        )

    def start(self, cid: str) -> None:
        status, body = self._t.request("POST", f"/containers/{cid}/start")
        if status not in (204, 304):
            raise engine_error(f"start {cid[:12]}", status, body)

    def stop(self, cid: str, timeout_s: int = 3) -> None:
        status, body = self._t.request(
            "POST", f"/containers/{cid}/stop?t={timeout_s}", timeout=timeout_s + TIMEOUT_S
        )
        if status not in (204, 304, 404):
            raise engine_error(f"stop {cid[:12]}", status, body)

    def remove(self, cid: str) -> bool:
        """Force-remove (kills it if running); False when it was already gone."""
        status, body = self._t.request("DELETE", f"/containers/{cid}?force=1&v=1")
        if status == 404:
            return False
        if status not in (200, 204):
            raise engine_error(f"remove {cid[:12]}", status, body)
        return True

    def inspect(self, cid: str) -> ContainerInfo | None:
        status, body = self._t.request("GET", f"/containers/{cid}/json")
        if status == 404:
            return None
        if status != 200:
            raise engine_error(f"inspect {cid[:12]}", status, body)
        raw = json.loads(body)
        state = raw.get("State") or {}
        return ContainerInfo(
            id=str(raw["Id"]),
            labels=_labels((raw.get("Config") or {}).get("Labels")),
            state=str(state.get("Status", "")),
            running=bool(state.get("Running")),
            pid=int(state.get("Pid") or 0),
        )

    def containers_with_label(
        self, key: str, value: str | None = None
    ) -> tuple[ContainerInfo, ...]:
        label = key if value is None else f"{key}={value}"
        path = "/containers/json?" + _q({"all": 1, "filters": json.dumps({"label": [label]})})
        status, body = self._t.request("GET", path)
        if status != 200:
            raise engine_error("list containers", status, body)
        return tuple(
            ContainerInfo(
                id=str(raw["Id"]),
                labels=_labels(raw.get("Labels")),
                state=str(raw.get("State", "")),
                running=str(raw.get("State", "")) == "running",
                pid=0,
            )
            for raw in json.loads(body) or []
        )

    # --- networks -------------------------------------------------------------------------------

    def create_network(
        self, name: str, *, labels: Mapping[str, str], options: Mapping[str, str]
    ) -> str | None:
        """Create a bridge network with NAT to the outside; None when `name` is already taken."""
        body = {
            "Name": name,
            "CheckDuplicate": True,
            "Driver": "bridge",
            "Internal": False,
            "Attachable": False,
            "EnableIPv6": False,
            "Labels": dict(labels),
            "Options": dict(options),
        }
        status, answer = self._t.request("POST", "/networks/create", body)
        if status == 409 or (status == 500 and b"already exists" in answer):  # Podman 4.3: 500
            return None
        if status not in (200, 201):
            raise engine_error(f"create network {name}", status, answer)
        return str(json.loads(answer).get("Id", ""))

    def inspect_network(self, name: str) -> NetworkInfo | None:
        status, body = self._t.request("GET", f"/networks/{urllib.parse.quote(name, safe='')}")
        if status == 404:
            return None
        if status != 200:
            raise engine_error(f"inspect network {name}", status, body)
        return _network(json.loads(body))

    def remove_network(self, name: str) -> bool | None:
        """True when removed, False when already gone, None while containers still use it."""
        status, body = self._t.request("DELETE", f"/networks/{urllib.parse.quote(name, safe='')}")
        if status == 404:
            return False
        if status in (403, 409):  # Docker: "has active endpoints"; Podman: in use
            return None
        if status not in (200, 204):
            raise engine_error(f"remove network {name}", status, body)
        return True

    def networks_with_label(self, key: str, value: str | None = None) -> tuple[NetworkInfo, ...]:
        """Networks carrying the label (a list answer: `containers` may be empty; inspect)."""
        label = key if value is None else f"{key}={value}"
        path = "/networks?" + _q({"filters": json.dumps({"label": [label]})})
        status, body = self._t.request("GET", path)
        if status != 200:
            raise engine_error("list networks", status, body)
        return tuple(_network(raw) for raw in json.loads(body) or [])
