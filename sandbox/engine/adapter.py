"""The one module that talks to the container engine; its errors are LaunchErrors. No policy."""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sandbox.errors import LaunchError
from sandbox.policy.plan import MountKind, NetworkMode, SeccompProfile

if TYPE_CHECKING:
    import http.client

    from docker import APIClient
    from docker.errors import APIError

    from sandbox.runtime.spec import ContainerSpec

# Two clients, one endpoint (from_env's resolver) and one error mapping (LaunchError):
# - launch hot path: raw Engine API (measured: import docker = 170 ms, more than half a
#   `docker run`): create, attach, wait, start, stop, remove, inspect, containers_with_label,
#   image_labels and images_with_label (`sandbox run` resolution), over the engine's socket
#   with unversioned paths that Docker and Podman's compatible service both accept;
# - image management (distribution: inspect details, save stream, load stream, remove,
#   platform, history, tag, disk usage, image ids, running containers of an image): docker-py's
#   low-level `docker.APIClient`, imported lazily on the first such call.
# TLS and ssh endpoints are refused with a clear error (forward the socket locally instead).

_TIMEOUT_S = 30.0
_STREAM_TIMEOUT_S = 600.0  # save/load of a large image: per socket operation
# docker-py's paths are versioned: 1.41 is Docker 20.10's API and what Podman's compatible
# service answers; a fixed version spares the `GET /version` round trip that "auto" costs.
_API_VERSION = "1.41"
STDOUT, STDERR = 1, 2


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: int  # unix seconds


@dataclass(frozen=True)
class ImageDetails:
    """One local image as distribution needs it (inspect)."""

    id: str  # sha256:<hex> of the image config
    tags: tuple[str, ...]
    size: int  # bytes, uncompressed
    labels: Mapping[str, str]
    diff_ids: tuple[str, ...]  # rootfs layers, bottom first


@dataclass(frozen=True)
class ImagePlatform:
    os: str  # "linux"
    architecture: str  # "amd64", "arm64"
    variant: str  # "v8" or ""


@dataclass(frozen=True)
class HistoryEntry:
    """One `docker history` row; `size` is 0 both for metadata-only steps and empty layers."""

    created: int  # unix seconds
    created_by: str
    comment: str
    size: int


@dataclass(frozen=True)
class ImageUsage:
    id: str
    size: int  # bytes of all its layers
    shared_size: int  # bytes of those layers that other local images use too


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    labels: Mapping[str, str]
    state: str  # created, running, exited, ...
    running: bool
    pid: int  # host pid of the container's init, 0 when not running


def _engine_error(what: str, status: int, body: bytes) -> LaunchError:
    try:
        message = str(json.loads(body).get("message") or body.decode(errors="replace"))
    except (ValueError, AttributeError):
        message = body.decode(errors="replace").strip()
    return LaunchError(f"{what}: the engine answered {status}: {message.strip()}")


def _explain(exc: APIError) -> str:
    return str(exc.explanation or exc).strip()


def _os_cause(exc: BaseException) -> str:
    """The socket error under requests' and urllib3's wrappers ("[Errno 111] Connection
    refused"), or the whole text when there is none."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return str(e)
        links = (*e.args, getattr(e, "reason", None), e.__cause__, e.__context__)
        todo.extend(x for x in links if isinstance(x, BaseException))
    return str(exc)


def _not_found() -> type[Exception]:
    import docker.errors

    return docker.errors.NotFound


class _Upload:
    """A load's body: the caller's chunks, with the exception they raised kept aside."""

    def __init__(self, chunks: Iterable[bytes], size: int | None) -> None:
        self._chunks = chunks
        self._size = size
        self.error: BaseException | None = None

    def _each(self) -> Iterator[bytes]:
        try:
            yield from self._chunks
        except Exception as exc:  # not GeneratorExit: that is urllib3 dropping the body
            self.error = exc
            raise

    def body(self) -> Iterable[bytes]:
        # requests sends a Content-Length for a body with a length, else chunked encoding.
        return self._each() if self._size is None else _Sized(self._each(), self._size)


class _Sized:
    def __init__(self, chunks: Iterator[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def __len__(self) -> int:
        return self._size


class _RawTransport:
    """HTTP/1.1 to a unix or plain tcp endpoint; one connection per call (the engine is local)."""

    def __init__(self, unix_path: str | None, host: str | None, port: int | None) -> None:
        self._unix = unix_path
        self._host = host
        self._port = port

    @property
    def where(self) -> str:
        return self._unix or f"{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The same endpoint as docker-py spells it."""
        return f"unix://{self._unix}" if self._unix else f"tcp://{self._host}:{self._port}"

    def _socket(self, timeout: float | None) -> socket.socket:
        try:
            if self._unix is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(self._unix)
            else:
                assert self._host is not None and self._port is not None
                sock = socket.create_connection((self._host, self._port), timeout=timeout)
        except OSError as exc:
            raise LaunchError(f"cannot reach the container engine at {self.where}: {exc}") from exc
        return sock

    def connection(self, timeout: float | None = _TIMEOUT_S) -> http.client.HTTPConnection:
        import http.client

        transport = self

        class _Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = transport._socket(self.timeout)

        return _Conn("localhost", timeout=timeout)

    def request(
        self, method: str, path: str, body: Any = None, timeout: float | None = _TIMEOUT_S
    ) -> tuple[int, bytes]:
        from sandbox.engine import http as _http

        sock = self._socket(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            headers["Connection"] = "close"
            _http.send_request(sock, method, path, data, headers)
            with sock.makefile("rb") as reader:
                resp = _http.read_response(reader, method)
            return resp.status, resp.body
        except OSError as exc:
            raise LaunchError(
                f"{method} {path.split('?', maxsplit=1)[0]}: engine connection failed: {exc}"
            ) from exc
        finally:
            sock.close()

    def send_later(self, method: str, path: str) -> socket.socket:
        """Send a request whose answer is read later (a wait posted before start)."""
        from sandbox.engine import http as _http

        sock = self._socket(None)
        try:
            _http.send_request(sock, method, path, None, {"Connection": "close"})
        except OSError as exc:
            sock.close()
            raise LaunchError(f"{method} {path}: engine connection failed: {exc}") from exc
        return sock

    def hijack(self, path: str) -> tuple[socket.socket, bytes]:
        """POST `path` and take over the connection (attach); returns the socket and early bytes."""
        sock = self._socket(_TIMEOUT_S)
        try:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
            )
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise LaunchError(f"attach: the engine closed the connection ({buf[:80]!r})")
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            status = int(head.split(b" ", 2)[1])
            if status not in (101, 200):
                raise _engine_error("attach", status, rest)
            sock.settimeout(None)
            return sock, rest
        except OSError as exc:
            sock.close()
            raise LaunchError(f"attach: engine connection failed: {exc}") from exc
        except BaseException:
            sock.close()
            raise


def _q(params: Mapping[str, Any]) -> str:
    return urllib.parse.urlencode(params)


def create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The Engine API create body for a spec; every hardening field is explicit."""
    mounts: list[dict[str, Any]] = []
    for m in spec.mounts:
        if m.kind is MountKind.TMPFS:
            tmpfs: dict[str, Any] = {"Mode": 0o1777}
            if m.size_bytes is not None:
                tmpfs["SizeBytes"] = m.size_bytes
            mounts.append({"Type": "tmpfs", "Target": m.target, "TmpfsOptions": tmpfs})
        else:
            mounts.append(
                {
                    "Type": "bind",
                    "Source": m.source,
                    "Target": m.target,
                    "ReadOnly": m.read_only,
                    "BindOptions": {"Propagation": "rprivate"},
                }
            )
    security = ["no-new-privileges"] if spec.no_new_privileges else []
    if spec.seccomp is not SeccompProfile.DEFAULT:
        raise LaunchError(f"seccomp profile {spec.seccomp} is never used")
    host: dict[str, Any] = {
        "NetworkMode": "none" if spec.network is NetworkMode.NONE else "bridge",
        "ReadonlyRootfs": spec.read_only_root,
        "CapDrop": list(spec.cap_drop),
        "CapAdd": list(spec.cap_add),
        "SecurityOpt": security,
        "Privileged": False,
        "IpcMode": "private" if spec.private_ipc else "shareable",
        "CgroupParent": spec.cgroup_parent,
        "Memory": spec.memory_bytes,
        "MemorySwap": spec.memory_bytes,
        "NanoCpus": spec.nano_cpus,
        "PidsLimit": spec.pids_limit,
        "Mounts": mounts,
        "Devices": [
            {"PathOnHost": d.path, "PathInContainer": d.path, "CgroupPermissions": d.permissions}
            for d in spec.devices
        ],
        "DeviceCgroupRules": [str(r) for r in spec.device_cgroup_rules],
        "GroupAdd": [str(g) for g in spec.group_ids],
        "AutoRemove": False,  # the session removes it after reading the exit code
    }
    if spec.nvidia_runtime:
        host["Runtime"] = "nvidia"
    if spec.cdi_devices:
        host["DeviceRequests"] = [{"Driver": "cdi", "DeviceIDs": list(spec.cdi_devices)}]
    return {
        "Image": spec.image,
        "Cmd": list(spec.command),
        "User": spec.user,
        "Env": [f"{v.name}={v.value}" for v in spec.env],
        "Labels": dict(spec.labels),
        "Hostname": spec.hostname or "",
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "StdinOnce": spec.stdin_open,
        "AttachStdin": spec.stdin_open,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": host,
    }


class PendingWait:
    """A wait request sent before start, so an instant exit is never missed.

    Both engines register the waiter before they answer the head (Docker's postContainersWait,
    Podman's compat wait) and send the exit code in the body. Only after the head has come is
    the waiter sure to exist: a `next-exit` waiter made after a quick app's exit would wait for
    ever, so the head is read here, before the caller starts the container."""

    def __init__(self, sock: socket.socket, cid: str) -> None:
        from sandbox.engine import http as _http

        self._sock = sock
        self._cid = cid
        try:
            sock.settimeout(_TIMEOUT_S)
            self._reader = sock.makefile("rb")
            self._head = _http.read_head(self._reader)
            sock.settimeout(None)  # the body comes when the app exits
        except OSError as exc:
            sock.close()
            raise LaunchError(f"wait {cid[:12]}: engine connection failed: {exc}") from exc

    def result(self) -> int:
        from sandbox.engine import http as _http

        try:
            with self._reader as reader:
                resp = _http.read_body(reader, "POST", self._head)
        except OSError as exc:
            raise LaunchError(f"wait {self._cid[:12]}: engine connection failed: {exc}") from exc
        finally:
            self._sock.close()
        if resp.status != 200:
            raise _engine_error(f"wait {self._cid[:12]}", resp.status, resp.body)
        data = json.loads(resp.body)
        if data.get("Error") and data["Error"].get("Message"):
            raise LaunchError(f"wait {self._cid[:12]}: {data['Error']['Message']}")
        return int(data.get("StatusCode", 1))

    def close(self) -> None:
        self._reader.close()
        self._sock.close()


class DockerAdapter:
    """The engine behind a few typed calls; engine and transport errors stop here."""

    def __init__(self, transport: _RawTransport, url: str) -> None:
        self._t = transport
        self.url = url
        self._apis: dict[float, APIClient] = {}

    @classmethod
    def from_env(cls, base_url: str | None = None) -> DockerAdapter:
        """Connect to `base_url`, or where DOCKER_HOST, the docker context or defaults point."""
        from sandbox.engine.endpoint import endpoint_from_env
        from sandbox.host.bounded_io import Missing

        endpoint = endpoint_from_env(os.environ, base_url)
        if isinstance(endpoint, Missing):
            raise LaunchError(f"cannot connect to the container engine: {endpoint.reason}")
        return cls(
            _RawTransport(endpoint.unix_path, endpoint.tcp_host, endpoint.tcp_port), endpoint.url
        )

    # --- images ---------------------------------------------------------------------------------

    def image_labels(self, ref: str) -> dict[str, str]:
        """The labels of the local image `ref` ({} when it has none)."""
        status, body = self._t.request("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")
        if status == 404:
            raise LaunchError(f"image {ref} not found")
        if status != 200:
            raise _engine_error(f"inspect image {ref}", status, body)
        labels = (json.loads(body).get("Config") or {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def images_with_label(self, key: str) -> tuple[ImageInfo, ...]:
        path = "/images/json?" + _q({"filters": json.dumps({"label": [key]})})
        status, body = self._t.request("GET", path)
        if status != 200:
            raise _engine_error("list images", status, body)
        out = []
        for raw in json.loads(body) or []:
            out.append(
                ImageInfo(
                    id=str(raw.get("Id", "")),
                    tags=tuple(t for t in raw.get("RepoTags") or () if t != "<none>:<none>"),
                    labels={str(k): str(v) for k, v in (raw.get("Labels") or {}).items()},
                    created=int(raw.get("Created") or 0),
                )
            )
        return tuple(out)

    # --- containers -----------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        path = "/containers/create" + (f"?{_q({'name': spec.name})}" if spec.name else "")
        status, body = self._t.request("POST", path, create_body(spec))
        if status == 404:
            raise LaunchError(f"image {spec.image} not found (the engine has no such image)")
        if status != 201:
            raise _engine_error(f"create a container of {spec.image}", status, body)
        return str(json.loads(body)["Id"])

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
            raise _engine_error(f"start {cid[:12]}", status, body)

    def stop(self, cid: str, timeout_s: int = 3) -> None:
        status, body = self._t.request(
            "POST", f"/containers/{cid}/stop?t={timeout_s}", timeout=timeout_s + _TIMEOUT_S
        )
        if status not in (204, 304, 404):
            raise _engine_error(f"stop {cid[:12]}", status, body)

    def remove(self, cid: str) -> bool:
        """Force-remove (kills it if running); False when it was already gone."""
        status, body = self._t.request("DELETE", f"/containers/{cid}?force=1&v=1")
        if status == 404:
            return False
        if status not in (200, 204):
            raise _engine_error(f"remove {cid[:12]}", status, body)
        return True

    def inspect(self, cid: str) -> ContainerInfo | None:
        status, body = self._t.request("GET", f"/containers/{cid}/json")
        if status == 404:
            return None
        if status != 200:
            raise _engine_error(f"inspect {cid[:12]}", status, body)
        raw = json.loads(body)
        state = raw.get("State") or {}
        return ContainerInfo(
            id=str(raw["Id"]),
            labels={
                str(k): str(v) for k, v in ((raw.get("Config") or {}).get("Labels") or {}).items()
            },
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
            raise _engine_error("list containers", status, body)
        out = []
        for raw in json.loads(body) or []:
            state = str(raw.get("State", ""))
            out.append(
                ContainerInfo(
                    id=str(raw["Id"]),
                    labels={str(k): str(v) for k, v in (raw.get("Labels") or {}).items()},
                    state=state,
                    running=state == "running",
                    pid=0,
                )
            )
        return tuple(out)

    # --- image management (distribution, updates, rebase): docker-py, see the module comment ---

    def _api(self, timeout_s: float = _TIMEOUT_S) -> APIClient:
        """docker-py's low-level client on this adapter's endpoint (one per timeout, kept).

        types-docker leaves inspect_image, history and load_image unannotated, hence the
        no-untyped-call ignores on those calls.
        """
        api = self._apis.get(timeout_s)
        if api is None:
            import docker

            with self._engine_errors("connect"):
                api = docker.APIClient(
                    base_url=self._t.base_url, version=_API_VERSION, timeout=int(timeout_s)
                )
            # Same endpoint as the raw client: no proxy or netrc from the environment.
            api.trust_env = False
            self._apis[timeout_s] = api
        return api

    @contextmanager
    def _engine_errors(self, what: str, image: str | None = None) -> Iterator[None]:
        """docker-py's and requests' errors as LaunchErrors; others (a caller's) pass through."""
        import docker.errors
        import requests.exceptions

        try:
            yield
        except docker.errors.NotFound as exc:  # ImageNotFound included
            if image is not None:
                raise LaunchError(f"image {image} not found") from exc
            raise LaunchError(f"{what}: the engine answered 404: {_explain(exc)}") from exc
        except docker.errors.APIError as exc:
            raise LaunchError(
                f"{what}: the engine answered {exc.status_code}: {_explain(exc)}"
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise LaunchError(
                f"{what}: cannot reach the container engine at {self.url}: {_os_cause(exc)}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise LaunchError(f"{what}: engine connection failed: {exc}") from exc
        except docker.errors.DockerException as exc:
            raise LaunchError(f"{what}: {exc}") from exc

    def _inspect_image(self, ref: str) -> dict[str, Any] | None:
        with self._engine_errors(f"inspect image {ref}"):
            try:
                raw: dict[str, Any] = self._api().inspect_image(ref)  # type: ignore[no-untyped-call]
            except _not_found():
                return None
        return raw

    def image_details(self, ref: str) -> ImageDetails | None:
        """What `docker image inspect` says of `ref`, or None when the engine has no such image."""
        raw = self._inspect_image(ref)
        if raw is None:
            return None
        labels = (raw.get("Config") or {}).get("Labels") or {}
        return ImageDetails(
            id=str(raw.get("Id", "")),
            tags=tuple(str(t) for t in raw.get("RepoTags") or () if t != "<none>:<none>"),
            size=int(raw.get("Size") or 0),
            labels={str(k): str(v) for k, v in labels.items()},
            diff_ids=tuple(str(d) for d in (raw.get("RootFS") or {}).get("Layers") or ()),
        )

    def image_save_stream(self, ref: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The `docker save` archive of `ref` as it arrives; nothing is buffered whole."""
        with self._engine_errors(f"save image {ref}", image=ref):
            stream = self._api(_STREAM_TIMEOUT_S).get_image(ref, chunk_size=chunk_size)
            try:
                for chunk in stream:
                    yield bytes(chunk)
            finally:
                stream.close()

    def image_load_stream(
        self, chunks: Iterable[bytes], size: int | None = None
    ) -> tuple[str, ...]:
        """`docker load` from `chunks` as produced; the names/ids it loaded. With `size` the
        body goes with a Content-Length (as `docker load -i` sends it), else chunked.

        An exception raised by `chunks` aborts the upload (the engine sees a truncated archive
        and loads nothing from it) and reaches the caller as it was raised.
        """
        upload = _Upload(chunks, size)
        loaded: list[str] = []
        try:
            with self._engine_errors("load image"):
                api = self._api(_STREAM_TIMEOUT_S)
                progress = api.load_image(upload.body(), quiet=True)  # type: ignore[no-untyped-call]
                for msg in progress:
                    if not isinstance(msg, dict):
                        continue
                    if msg.get("error") or msg.get("errorDetail"):
                        detail = msg.get("error") or (msg.get("errorDetail") or {}).get("message")
                        raise LaunchError(f"load image: the engine refused the archive: {detail}")
                    text = str(msg.get("stream") or "")
                    for prefix in ("Loaded image ID: ", "Loaded image: "):
                        if text.startswith(prefix):
                            loaded.append(text[len(prefix) :].strip())
        except LaunchError:
            # requests wraps what a body iterator raises (as a connection error): the caller's
            # own exception is the one that says what went wrong.
            if upload.error is not None:
                raise upload.error from None
            raise
        if upload.error is not None:
            raise upload.error
        return tuple(loaded)

    def image_remove(self, ref: str) -> bool:
        """Untag and delete `ref` (not forced: an image a container uses stays); False if absent."""
        with self._engine_errors(f"remove image {ref}"):
            try:
                self._api().remove_image(ref, force=False, noprune=False)
            except _not_found():
                return False
        return True

    def image_platform(self, ref: str) -> ImagePlatform | None:
        """The OS and architecture `ref` was built for, or None when there is no such image."""
        raw = self._inspect_image(ref)
        if raw is None:
            return None
        return ImagePlatform(
            os=str(raw.get("Os") or ""),
            architecture=str(raw.get("Architecture") or ""),
            variant=str(raw.get("Variant") or ""),
        )

    def image_history(self, ref: str) -> tuple[HistoryEntry, ...]:
        """`docker history` of `ref`, oldest first (one entry per config history entry)."""
        with self._engine_errors(f"history of image {ref}", image=ref):
            rows: list[dict[str, Any]] = self._api().history(ref) or []  # type: ignore[no-untyped-call]
        return tuple(
            HistoryEntry(
                created=int(raw.get("Created") or 0),
                created_by=str(raw.get("CreatedBy") or ""),
                comment=str(raw.get("Comment") or ""),
                size=int(raw.get("Size") or 0),
            )
            for raw in reversed(rows)
        )

    def image_ids(self) -> tuple[str, ...]:
        """The ids of every local image with a name or a child (not intermediate layers)."""
        with self._engine_errors("list images"):
            ids: list[str] = self._api().images(quiet=True) or []
        return tuple(dict.fromkeys(str(i) for i in ids))

    def running_containers_of(self, image_id: str) -> tuple[str, ...]:
        """Ids of the running containers created from exactly `image_id` (any owner)."""
        with self._engine_errors("list containers"):
            rows: list[dict[str, Any]] = self._api().containers() or []
        return tuple(str(raw["Id"]) for raw in rows if raw.get("ImageID") == image_id)

    def image_tag(self, ref: str, name: str) -> None:
        """Give the image `ref` the name `name` (repo:tag); a name on another image moves."""
        repo, _, tag = name.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = name, "latest"
        with self._engine_errors(f"tag image {ref} as {name}", image=ref):
            self._api().tag(ref, repo, tag)

    def disk_usage(self) -> tuple[ImageUsage, ...]:
        """Per image: bytes, bytes shared with other images (`docker system df -v`)."""
        with self._engine_errors("disk usage"):
            raw_df = self._api(_STREAM_TIMEOUT_S).df()
        return tuple(
            ImageUsage(
                id=str(raw.get("Id", "")),
                size=int(raw.get("Size") or 0),
                shared_size=max(0, int(raw.get("SharedSize") or 0)),
            )
            for raw in raw_df.get("Images") or []
        )

    def close(self) -> None:
        """The raw client holds nothing between calls; docker-py's clients hold a session."""
        apis, self._apis = self._apis, {}
        for api in apis.values():
            api.close()

    def __enter__(self) -> DockerAdapter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_frames(sock: socket.socket, early: bytes, out: Mapping[int, Any]) -> None:
    """Copy the engine's multiplexed attach stream to `out[STDOUT]`/`out[STDERR]` until EOF."""
    buf = early
    while True:
        while len(buf) >= 8:
            kind, size = buf[0], int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            payload, buf = buf[8 : 8 + size], buf[8 + size :]
            target = out.get(STDERR if kind == STDERR else STDOUT)
            if target is not None:
                target.write(payload)
                target.flush()
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
