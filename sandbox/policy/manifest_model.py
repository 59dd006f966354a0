"""The app manifest's typed model and its bounds: frozen dataclasses, no parsing rules; pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sandbox.policy.vocabulary import AudioMode, DisplayRequest

MANIFEST_VERSION = 1
SUPPORTED_MANIFEST_VERSIONS: Final = frozenset({MANIFEST_VERSION})

# Bounds: generous for real apps, small enough that a hostile image cannot make the review
# screen, the labels or the engine's arguments unbounded.
MAX_MANIFEST_BYTES: Final = 64 * 1024
MAX_ID = 255
MAX_NAME = 128
MAX_VERSION = 64
MAX_VENDOR = 128
MAX_DESCRIPTION = 1024
MAX_ARG = 1024
MAX_ARGS = 64
MAX_PATH = 1024
MAX_PATH_SEGMENT = 255
MAX_CATEGORIES = 16
MAX_CATEGORY = 64
MAX_STORAGE = 32
MIN_MEMORY = 32 * 1024**2
MAX_MEMORY = 1024**4
MIN_CPUS = 0.01
MAX_CPUS = 1024.0
MIN_PIDS = 8
MAX_PIDS = 4_194_304  # the kernel's PID_MAX_LIMIT
MEMORY_UNITS: Final = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


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
    smoke: tuple[str, ...] = ()  # a quick self-check run after a rebase; () runs `command`


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
    storage: tuple[StorageSpec, ...] = ()  # sorted by name, so equal manifests compare equal


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
