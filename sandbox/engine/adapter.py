"""The one entry point to the container engine: endpoint from the environment, two clients.

`DockerAdapter.from_env()` resolves the endpoint once (engine/endpoint.py) and serves it
through the raw hot-path client (its own methods: create … inspect, images by label) and
`.images`, docker-py's image management, imported on its first call. Failures come as the
error map makes them (engine/error_map.py). No policy, no runtime, no printing.
TLS and ssh endpoints are refused with a clear error (forward the socket locally instead).
"""

from __future__ import annotations

import os
from types import TracebackType

from sandbox.engine.error_map import no_endpoint
from sandbox.engine.frames import STDERR, STDOUT, read_frames
from sandbox.engine.images import ImageClient
from sandbox.engine.pending_wait import PendingWait
from sandbox.engine.raw_client import BRIDGE_NAME_OPTION, RawClient
from sandbox.engine.records import (
    ContainerInfo,
    HistoryEntry,
    ImageConfig,
    ImageDetails,
    ImageInfo,
    ImagePlatform,
    ImageUsage,
    NetworkInfo,
)
from sandbox.engine.transport import RawTransport

# Callers import the engine's whole surface from here, the one entry point.
__all__ = [
    "BRIDGE_NAME_OPTION",
    "STDERR",
    "STDOUT",
    "ContainerInfo",
    "DockerAdapter",
    "HistoryEntry",
    "ImageClient",
    "ImageConfig",
    "ImageDetails",
    "ImageInfo",
    "ImagePlatform",
    "ImageUsage",
    "NetworkInfo",
    "PendingWait",
    "read_frames",
]


class DockerAdapter(RawClient):
    """The engine behind a few typed calls; engine and transport errors stop here."""

    def __init__(self, transport: RawTransport, url: str) -> None:
        super().__init__(transport, url)
        self.images = ImageClient(transport.base_url, url)

    @classmethod
    def from_env(cls, base_url: str | None = None) -> DockerAdapter:
        """Connect to `base_url`, or where DOCKER_HOST, the docker context or defaults point."""
        # Imported here as before the split: commands that only build an adapter type (ps,
        # gc's import) do not pay for endpoint resolution's imports.
        from sandbox.engine.endpoint import endpoint_from_env
        from sandbox.host.bounded_io import Missing

        endpoint = endpoint_from_env(os.environ, base_url)
        if isinstance(endpoint, Missing):
            raise no_endpoint(endpoint.reason)
        return cls(
            RawTransport(endpoint.unix_path, endpoint.tcp_host, endpoint.tcp_port), endpoint.url
        )

    def close(self) -> None:
        """The raw client holds nothing between calls; docker-py's clients hold a session."""
        self.images.close()

    def __enter__(self) -> DockerAdapter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
