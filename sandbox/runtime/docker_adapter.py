"""The one module that imports docker: a thin adapter whose errors are LaunchErrors. No policy."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from sandbox.errors import LaunchError

if TYPE_CHECKING:
    import docker


def _docker() -> Any:
    # Imported lazily: `sandbox manifest check FILE` and the pure core must not pay for docker.
    import docker  # noqa: PLC0415

    return docker


class DockerAdapter:
    """A docker-py client behind a few typed calls; docker's exceptions stop here."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client

    @classmethod
    def from_env(cls, base_url: str | None = None) -> DockerAdapter:
        """Connect to `base_url`, or where DOCKER_HOST (else the default socket) points."""
        docker = _docker()
        try:
            client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        except docker.errors.DockerException as exc:
            where = base_url or "the docker engine from the environment"
            raise LaunchError(f"cannot connect to {where}: {exc}") from None
        return cls(client)

    def image_labels(self, ref: str) -> dict[str, str]:
        """The labels of the local image `ref` ({} when it has none)."""
        docker = _docker()
        import requests  # noqa: PLC0415  (docker-py lets its connection errors through)

        try:
            image = self._client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise LaunchError(f"image {ref} not found") from None
        except docker.errors.APIError as exc:
            raise LaunchError(f"docker engine refused to inspect image {ref}: {exc}") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise LaunchError(f"cannot reach the docker engine: {exc}") from None
        labels = image.attrs.get("Config", {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DockerAdapter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
