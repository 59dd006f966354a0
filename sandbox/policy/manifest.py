"""The app manifest (sandbox.toml / image labels): typed, frozen, parsed strictly. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.policy.vocabulary import AudioMode, DisplayRequest

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class AppInfo:
    id: str  # reverse-DNS, e.g. "com.example.Game"
    name: str
    version: str
    command: tuple[str, ...]
    icon: str | None = None  # absolute path inside the image
    categories: tuple[str, ...] = ()
    vendor: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class StorageSpec:
    name: str  # the <name> of storage.<name>
    path: str  # absolute path inside the container


@dataclass(frozen=True)
class Capabilities:
    display: DisplayRequest | None = None
    audio: frozenset[AudioMode] = frozenset()
    gpu: bool = False
    webcam: bool = False
    gamepad: bool = False
    network: bool = False
    storage: tuple[StorageSpec, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Whole-app resource limits; None means the built-in default."""

    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


@dataclass(frozen=True)
class Manifest:
    app: AppInfo
    capabilities: Capabilities = field(default_factory=Capabilities)
    limits: Limits = field(default_factory=Limits)
    manifest_version: int = MANIFEST_VERSION
