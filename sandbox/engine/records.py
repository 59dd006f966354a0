"""The engine's answers as typed frozen records (images, history, usage, containers); no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: int  # unix seconds


@dataclass(frozen=True)
class ImageConfig:
    """What a container of one local image would take from its config unless told otherwise
    (inspect's Config): the runtime reads the labels for the manifest and masks the volumes."""

    id: str = ""  # sha256:<hex> of the image config
    labels: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()  # VOLUME paths, sorted, as the image declares them
    working_dir: str = ""  # WORKDIR, "" when the image sets none


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


@dataclass(frozen=True)
class NetworkInfo:
    """One engine network (inspect): what the runtime's app network and gc need of it."""

    id: str
    name: str
    labels: Mapping[str, str]
    bridge: str | None  # the Linux bridge the engine reports (Options), None when it says none
    gateways: tuple[str, ...]  # the bridge's addresses on the host, one per IPAM subnet
    subnets: tuple[str, ...]  # CIDR
    containers: tuple[str, ...]  # ids of the containers attached now (running ones)
