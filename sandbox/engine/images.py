"""Image management (inspect, save, load, tag, remove, history, disk usage) through docker-py.

Distribution's calls are not start-up bound, so they use docker-py's low-level `APIClient`,
imported on the first call only. Talks to no container; knows no policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sandbox.engine.error_map import docker_errors
from sandbox.engine.records import HistoryEntry, ImageDetails, ImagePlatform, ImageUsage
from sandbox.engine.transport import TIMEOUT_S
from sandbox.errors import LaunchError

if TYPE_CHECKING:
    from docker import APIClient

_STREAM_TIMEOUT_S = 600.0  # save/load of a large image: per socket operation
# docker-py's paths are versioned: 1.41 is Docker 20.10's API and what Podman's compatible
# service answers; a fixed version spares the `GET /version` round trip that "auto" costs.
_API_VERSION = "1.41"


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


def _loaded_names(progress: Iterable[Any]) -> list[str]:
    """The names/ids a load's JSON progress stream reports; its first error as a LaunchError."""
    loaded: list[str] = []
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
    return loaded


class ImageClient:
    """Local images behind typed calls; engine and transport errors stop here (LaunchError)."""

    def __init__(self, base_url: str, url: str) -> None:
        self.base_url = base_url  # the endpoint as docker-py spells it
        self.url = url
        self._apis: dict[float, APIClient] = {}

    def _api(self, timeout_s: float = TIMEOUT_S) -> APIClient:
        """docker-py's low-level client on this endpoint (one per timeout, kept).

        types-docker leaves inspect_image, history and load_image unannotated, hence the
        no-untyped-call ignores on those calls.
        """
        api = self._apis.get(timeout_s)
        if api is None:
            import docker

            with self._errors("connect"):
                api = docker.APIClient(
                    base_url=self.base_url, version=_API_VERSION, timeout=int(timeout_s)
                )
            # Same endpoint as the raw client: no proxy or netrc from the environment.
            api.trust_env = False
            self._apis[timeout_s] = api
        return api

    def _errors(self, what: str, image: str | None = None) -> AbstractContextManager[None]:
        return docker_errors(what, self.url, image)

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        with self._errors(f"inspect image {ref}"):
            try:
                raw: dict[str, Any] = self._api().inspect_image(ref)  # type: ignore[no-untyped-call]
            except _not_found():
                return None
        return raw

    def details(self, ref: str) -> ImageDetails | None:
        """What `docker image inspect` says of `ref`, or None when the engine has no such image."""
        raw = self._inspect(ref)
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

    def save_stream(self, ref: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The `docker save` archive of `ref` as it arrives; nothing is buffered whole."""
        with self._errors(f"save image {ref}", image=ref):
            stream = self._api(_STREAM_TIMEOUT_S).get_image(ref, chunk_size=chunk_size)
            try:
                for chunk in stream:
                    yield bytes(chunk)
            finally:
                stream.close()

    def load_stream(self, chunks: Iterable[bytes], size: int | None = None) -> tuple[str, ...]:
        """`docker load` from `chunks` as produced; the names/ids it loaded. With `size` the
        body goes with a Content-Length (as `docker load -i` sends it), else chunked.

        An exception raised by `chunks` aborts the upload (the engine sees a truncated archive
        and loads nothing from it) and reaches the caller as it was raised.
        """
        upload = _Upload(chunks, size)
        try:
            with self._errors("load image"):
                api = self._api(_STREAM_TIMEOUT_S)
                progress = api.load_image(upload.body(), quiet=True)  # type: ignore[no-untyped-call]
                loaded = _loaded_names(progress)
        except LaunchError:
            # requests wraps what a body iterator raises (as a connection error): the caller's
            # own exception is the one that says what went wrong.
            if upload.error is not None:
                raise upload.error from None
            raise
        if upload.error is not None:
            raise upload.error
        return tuple(loaded)

    def remove(self, ref: str) -> bool:
        """Untag and delete `ref` (not forced: an image a container uses stays); False if absent."""
        with self._errors(f"remove image {ref}"):
            try:
                self._api().remove_image(ref, force=False, noprune=False)
            except _not_found():
                return False
        return True

    def platform(self, ref: str) -> ImagePlatform | None:
        """The OS and architecture `ref` was built for, or None when there is no such image."""
        raw = self._inspect(ref)
        if raw is None:
            return None
        return ImagePlatform(
            os=str(raw.get("Os") or ""),
            architecture=str(raw.get("Architecture") or ""),
            variant=str(raw.get("Variant") or ""),
        )

    def history(self, ref: str) -> tuple[HistoryEntry, ...]:
        """`docker history` of `ref`, oldest first (one entry per config history entry)."""
        with self._errors(f"history of image {ref}", image=ref):
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

    def ids(self) -> tuple[str, ...]:
        """The ids of every local image with a name or a child (not intermediate layers)."""
        with self._errors("list images"):
            ids: list[str] = self._api().images(quiet=True) or []
        return tuple(dict.fromkeys(str(i) for i in ids))

    def running_containers_of(self, image_id: str) -> tuple[str, ...]:
        """Ids of the running containers created from exactly `image_id` (any owner)."""
        with self._errors("list containers"):
            rows: list[dict[str, Any]] = self._api().containers() or []
        return tuple(str(raw["Id"]) for raw in rows if raw.get("ImageID") == image_id)

    def tag(self, ref: str, name: str) -> None:
        """Give the image `ref` the name `name` (repo:tag); a name on another image moves."""
        repo, _, tag = name.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = name, "latest"
        with self._errors(f"tag image {ref} as {name}", image=ref):
            self._api().tag(ref, repo, tag)

    def disk_usage(self) -> tuple[ImageUsage, ...]:
        """Per image: bytes, bytes shared with other images (`docker system df -v`)."""
        with self._errors("disk usage"):
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
        """docker-py's clients hold a session each; the next call opens a new one."""
        apis, self._apis = self._apis, {}
        for api in apis.values():
            api.close()
