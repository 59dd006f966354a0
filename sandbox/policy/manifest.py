"""The app manifest (sandbox.toml / image labels): typed, frozen, parsed strictly. Pure, no I/O."""

from __future__ import annotations

import json
import math
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sandbox.errors import ManifestError
from sandbox.host.names import app_id_problem
from sandbox.policy.vocabulary import STORAGE_NAME, AudioMode, DisplayRequest

MANIFEST_VERSION = 1
SUPPORTED_MANIFEST_VERSIONS: Final = frozenset({MANIFEST_VERSION})

# Label namespace: reverse-DNS as the OCI annotation rules and docker's label guide ask of
# third-party tools; "sandbox" alone is too generic to be ours, so the project name is spelled
# out. Renaming means changing these constants only.
LABEL_NAMESPACE: Final = "org.sandbox-apps"
LABEL_MANIFEST: Final = f"{LABEL_NAMESPACE}.manifest"
LABEL_MANIFEST_VERSION: Final = f"{LABEL_NAMESPACE}.manifest-version"
OCI_TITLE: Final = "org.opencontainers.image.title"
OCI_VERSION: Final = "org.opencontainers.image.version"
OCI_VENDOR: Final = "org.opencontainers.image.vendor"
OCI_DESCRIPTION: Final = "org.opencontainers.image.description"

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

# flatpak's rules for application ids: 3+ segments, segments of [A-Za-z0-9_-] not starting with
# a digit, '-' only in the last segment (it must stay a valid D-Bus name elsewhere).
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~:-]*")
# freedesktop menu categories are CamelCase words; vendor extensions start with "X-".
_CATEGORY = re.compile(r"[A-Z][A-Za-z0-9]*|X-[A-Za-z0-9][A-Za-z0-9-]*")
_MEMORY = re.compile(r"([1-9][0-9]*)([KMGT]?)", re.IGNORECASE)
_UNITS: Final = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POS = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)
_BIDI_OVERRIDES: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_AUDIO_ORDER: Final = (AudioMode.PLAYBACK, AudioMode.RECORD)

# Where a storage dir may not be mounted: host-like system trees the runtime or the image
# need intact, the runtime's own mount points (/run, /tmp with the X socket dir) and anything
# whose replacement would hide the image itself.
_SYSTEM_TREES: Final = (
    "/etc", "/proc", "/sys", "/dev", "/usr", "/bin", "/sbin", "/boot", "/run", "/var/run",
    "/tmp", "/var/lib/docker",
)  # fmt: skip
_WHOLE_TREES: Final = frozenset({"/", "/home", "/var", "/opt", "/srv", "/mnt", "/media"})


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


# --- small checkers: each raises ManifestError(path, problem) ---------------------------------


def _key_path(parent: str, key: str) -> str:
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
    return f"{parent}.{shown}" if parent else shown


def _table(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be a table, not {_type_name(value)}")
    return value


def _check_keys(
    table: Mapping[str, Any], path: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    known = required + optional
    for key in table:
        if key not in known:
            raise ManifestError(
                _key_path(path, str(key)), f"unknown key (known: {', '.join(sorted(known))})"
            )
    for key in required:
        if key not in table:
            raise ManifestError(_key_path(path, key), "is required")


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__


def _string(value: object, path: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise ManifestError(path, f"must be a string, not {_type_name(value)}")
    if not value:
        raise ManifestError(path, "must not be empty")
    if len(value) > max_len:
        raise ManifestError(path, f"is {len(value)} characters long (at most {max_len})")
    if any(_is_hostile_char(c) for c in value):
        raise ManifestError(
            path, "must not contain NUL, newlines, other control or bidi-override characters"
        )
    return value


def _is_hostile_char(c: str) -> bool:
    # Control chars and line breaks would split `key=value` label lines and Dockerfile LABELs;
    # bidi overrides let a name look different on the review screen than it is.
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI_OVERRIDES


def _text(value: object, path: str, max_len: int) -> str:
    text = _string(value, path, max_len)
    if text != text.strip():
        raise ManifestError(path, "must not start or end with whitespace")
    return text


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ManifestError(path, f"must be true or false, not {_type_name(value)}")
    return value


def _int(value: object, path: str, lo: int, hi: int) -> int:
    # bool is an int subclass in Python; `true` is not a number in a manifest.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(path, f"must be an integer, not {_type_name(value)}")
    if not lo <= value <= hi:
        raise ManifestError(path, f"must be between {lo} and {hi}, not {value}")
    return value


def _list(value: object, path: str, max_items: int) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ManifestError(path, f"must be an array, not {_type_name(value)}")
    if len(value) > max_items:
        raise ManifestError(path, f"has {len(value)} items (at most {max_items})")
    return list(value)


def _abs_path(value: object, path: str) -> str:
    text = _string(value, path, MAX_PATH)
    if not text.startswith("/"):
        raise ManifestError(path, f"path must be absolute, not {text!r}")
    if text == "/":
        return text
    if text.endswith("/"):
        raise ManifestError(path, f"path must not end with '/': {text!r}")
    for segment in text[1:].split("/"):
        if segment == "":
            raise ManifestError(path, f"path must not contain '//': {text!r}")
        if segment in (".", ".."):
            raise ManifestError(path, f"path must not contain '{segment}' segments: {text!r}")
        if len(segment) > MAX_PATH_SEGMENT:
            raise ManifestError(path, f"path segment longer than {MAX_PATH_SEGMENT} characters")
    return text


def _is_under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


# --- sections ----------------------------------------------------------------------------------


def _app_id(value: object, path: str) -> str:
    text = _string(value, path, MAX_ID)
    problem = app_id_problem(text)
    if problem is not None:
        raise ManifestError(path, problem)
    return text


def _parse_app(value: object) -> AppInfo:
    table = _table(value, "app")
    _check_keys(
        table,
        "app",
        ("id", "name", "version", "command"),
        ("icon", "categories", "vendor", "description", "smoke"),
    )
    version = _text(table["version"], "app.version", MAX_VERSION)
    if not _VERSION.fullmatch(version):
        raise ManifestError(
            "app.version",
            f"must start with a letter or digit and hold only A-Z a-z 0-9 . _ + ~ : -: {version!r}",
        )
    args = _list(table["command"], "app.command", MAX_ARGS)
    if not args:
        raise ManifestError("app.command", "must not be empty")
    command = tuple(_string(a, f"app.command[{i}]", MAX_ARG) for i, a in enumerate(args))
    _abs_path(command[0], "app.command[0]")
    smoke: tuple[str, ...] = ()
    if "smoke" in table:
        raw_smoke = _list(table["smoke"], "app.smoke", MAX_ARGS)
        if not raw_smoke:
            raise ManifestError("app.smoke", "must not be empty (leave it out to run `command`)")
        smoke = tuple(_string(a, f"app.smoke[{i}]", MAX_ARG) for i, a in enumerate(raw_smoke))
        _abs_path(smoke[0], "app.smoke[0]")
    categories: list[str] = []
    for i, item in enumerate(_list(table.get("categories", []), "app.categories", MAX_CATEGORIES)):
        where = f"app.categories[{i}]"
        category = _string(item, where, MAX_CATEGORY)
        if not _CATEGORY.fullmatch(category):
            raise ManifestError(
                where, f"{category!r} is not a freedesktop category (CamelCase, or X-Name)"
            )
        if category in categories:
            raise ManifestError(where, f"duplicate category {category!r}")
        categories.append(category)
    return AppInfo(
        id=_app_id(table["id"], "app.id"),
        name=_text(table["name"], "app.name", MAX_NAME),
        version=version,
        command=command,
        icon=_abs_path(table["icon"], "app.icon") if "icon" in table else None,
        categories=tuple(categories),
        vendor=_text(table["vendor"], "app.vendor", MAX_VENDOR) if "vendor" in table else None,
        description=(
            _text(table["description"], "app.description", MAX_DESCRIPTION)
            if "description" in table
            else None
        ),
        smoke=smoke,
    )


def _parse_storage(value: object, app: AppInfo) -> tuple[StorageSpec, ...]:
    table = _table(value, "capabilities.storage")
    if len(table) > MAX_STORAGE:
        raise ManifestError(
            "capabilities.storage", f"has {len(table)} entries (at most {MAX_STORAGE})"
        )
    specs: list[StorageSpec] = []
    for name, raw in table.items():
        where = _key_path("capabilities.storage", str(name))
        if not STORAGE_NAME.fullmatch(str(name)):
            raise ManifestError(
                where, "storage names are 1-32 of a-z, 0-9, '_' or '-', starting with a letter"
            )
        path = _abs_path(raw, where)
        if path in _WHOLE_TREES:
            raise ManifestError(where, f"{path} is a whole system tree; use a dir inside it")
        for tree in _SYSTEM_TREES:
            if _is_under(path, tree):
                raise ManifestError(where, f"{path} is on or under the system dir {tree}")
        if path.split("/")[1].startswith("lib"):
            raise ManifestError(where, f"{path} is on or under a system library dir")
        hidden = [("app.command[0]", app.command[0])]
        if app.icon is not None:
            hidden.append(("app.icon", app.icon))
        for field_name, target in hidden:
            if _is_under(target, path):
                raise ManifestError(where, f"{path} would hide {field_name} {target}")
        for other in specs:
            if other.path == path:
                raise ManifestError(where, f"{path} is also storage.{other.name}")
            if _is_under(path, other.path) or _is_under(other.path, path):
                raise ManifestError(
                    where, f"{path} and storage.{other.name} ({other.path}) are nested"
                )
        specs.append(StorageSpec(name=str(name), path=path))
    return tuple(sorted(specs, key=lambda s: s.name))


def _parse_capabilities(value: object, app: AppInfo) -> Capabilities:
    table = _table(value, "capabilities")
    _check_keys(
        table, "capabilities", (), ("display", "audio", "gpu", "webcam", "gamepad", "network",
                                    "storage")
    )  # fmt: skip
    display: DisplayRequest | None = None
    if "display" in table:
        raw = table["display"]
        if not isinstance(raw, str):
            raise ManifestError("capabilities.display", f"must be a string, not {_type_name(raw)}")
        try:
            display = DisplayRequest(raw)
        except ValueError:
            known = ", ".join(d.value for d in DisplayRequest)
            raise ManifestError(
                "capabilities.display", f"unknown display {raw!r} (known: {known})"
            ) from None
    audio: set[AudioMode] = set()
    for i, raw in enumerate(_list(table.get("audio", []), "capabilities.audio", len(AudioMode))):
        where = f"capabilities.audio[{i}]"
        if not isinstance(raw, str):
            raise ManifestError(where, f"must be a string, not {_type_name(raw)}")
        try:
            mode = AudioMode(raw)
        except ValueError:
            known = ", ".join(m.value for m in AudioMode)
            raise ManifestError(where, f"unknown audio mode {raw!r} (known: {known})") from None
        if mode in audio:
            raise ManifestError(where, f"duplicate audio mode {raw!r}")
        audio.add(mode)
    return Capabilities(
        display=display,
        audio=frozenset(audio),
        gpu=_bool(table.get("gpu", False), "capabilities.gpu"),
        webcam=_bool(table.get("webcam", False), "capabilities.webcam"),
        gamepad=_bool(table.get("gamepad", False), "capabilities.gamepad"),
        network=_bool(table.get("network", False), "capabilities.network"),
        storage=_parse_storage(table.get("storage", {}), app),
    )


def parse_memory(value: object, path: str = "limits.memory") -> int:
    """`"512M"`, `"2G"` (binary units) or an integer of bytes, within the sane bounds."""
    if isinstance(value, str):
        match = _MEMORY.fullmatch(value)
        if match is None:
            raise ManifestError(
                path, f"must be bytes or a size like '512M' or '2G' (K, M, G, T), not {value!r}"
            )
        amount = int(match.group(1)) * _UNITS[match.group(2).upper()]
        if not MIN_MEMORY <= amount <= MAX_MEMORY:
            raise ManifestError(path, f"must be between 32M and 1T, not {value}")
        return amount
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(path, f"must be a size string or an integer, not {_type_name(value)}")
    if not MIN_MEMORY <= value <= MAX_MEMORY:
        raise ManifestError(path, f"must be between {MIN_MEMORY} and {MAX_MEMORY} bytes")
    return value


def _parse_limits(value: object) -> Limits:
    table = _table(value, "limits")
    _check_keys(table, "limits", (), ("memory", "cpus", "pids"))
    cpus: float | None = None
    if "cpus" in table:
        raw = table["cpus"]
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ManifestError("limits.cpus", f"must be a number, not {_type_name(raw)}")
        cpus = float(raw)
        if not math.isfinite(cpus) or not MIN_CPUS <= cpus <= MAX_CPUS:
            raise ManifestError(
                "limits.cpus", f"must be between {MIN_CPUS} and {MAX_CPUS:g}, not {raw}"
            )
    return Limits(
        memory_bytes=parse_memory(table["memory"]) if "memory" in table else None,
        cpus=cpus,
        pids=_int(table["pids"], "limits.pids", MIN_PIDS, MAX_PIDS) if "pids" in table else None,
    )


# --- public API --------------------------------------------------------------------------------


def check_manifest_version(value: object, path: str = "manifest-version") -> int:
    """The manifest-version value -> int; versions this sandbox cannot read are refused."""
    version = _int(value, path, 0, 2**31)
    if version not in SUPPORTED_MANIFEST_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_MANIFEST_VERSIONS))
        raise ManifestError(
            path, f"unsupported manifest version {version} (this sandbox supports {supported})"
        )
    return version


def parse_manifest(doc: Mapping[str, Any]) -> Manifest:
    """A parsed TOML (or JSON) document -> Manifest; the first problem is a ManifestError."""
    table = _table(doc, "")
    _check_keys(table, "", ("manifest-version", "app"), ("capabilities", "limits"))
    version = check_manifest_version(table["manifest-version"])
    app = _parse_app(table["app"])
    return Manifest(
        app=app,
        capabilities=_parse_capabilities(table.get("capabilities", {}), app),
        limits=_parse_limits(table.get("limits", {})),
        manifest_version=version,
    )


def parse_manifest_toml(text: str) -> Manifest:
    """The text of a sandbox.toml -> Manifest; TOML syntax errors name the line and column."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError("", f"manifest is {size} bytes (at most {MAX_MANIFEST_BYTES})")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POS.match(str(exc))
        if match is None:
            raise ManifestError("", f"TOML syntax error: {exc}") from None
        raise ManifestError(
            f"line {match['line']}, column {match['col']}", f"TOML syntax error: {match['msg']}"
        ) from None
    return parse_manifest(doc)


def format_memory(amount: int) -> str | int:
    """Bytes -> the largest exact unit string ("2G"), or the integer when none is exact."""
    for unit in ("T", "G", "M", "K"):
        if amount % _UNITS[unit] == 0:
            return f"{amount // _UNITS[unit]}{unit}"
    return amount


def dump_manifest(m: Manifest) -> dict[str, Any]:
    """Manifest -> a plain document that parse_manifest turns back into an equal Manifest."""
    app: dict[str, Any] = {
        "id": m.app.id,
        "name": m.app.name,
        "version": m.app.version,
        "command": list(m.app.command),
    }
    if m.app.icon is not None:
        app["icon"] = m.app.icon
    if m.app.categories:
        app["categories"] = list(m.app.categories)
    if m.app.vendor is not None:
        app["vendor"] = m.app.vendor
    if m.app.description is not None:
        app["description"] = m.app.description
    if m.app.smoke:
        app["smoke"] = list(m.app.smoke)
    caps = m.capabilities
    capabilities: dict[str, Any] = {}
    if caps.display is not None:
        capabilities["display"] = caps.display.value
    capabilities["audio"] = [mode.value for mode in _AUDIO_ORDER if mode in caps.audio]
    capabilities.update(
        gpu=caps.gpu, webcam=caps.webcam, gamepad=caps.gamepad, network=caps.network
    )
    capabilities["storage"] = {s.name: s.path for s in caps.storage}
    limits: dict[str, Any] = {}
    if m.limits.memory_bytes is not None:
        limits["memory"] = format_memory(m.limits.memory_bytes)
    if m.limits.cpus is not None:
        limits["cpus"] = m.limits.cpus
    if m.limits.pids is not None:
        limits["pids"] = m.limits.pids
    doc: dict[str, Any] = {
        "manifest-version": m.manifest_version,
        "app": app,
        "capabilities": capabilities,
    }
    if limits:
        doc["limits"] = limits
    return doc


def canonical_json(m: Manifest) -> str:
    """One line of ASCII JSON with sorted keys: the same manifest always gives the same text."""
    return json.dumps(dump_manifest(m), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def manifest_to_labels(m: Manifest) -> dict[str, str]:
    """Manifest -> the image labels that carry it (ours plus the OCI title/version/...)."""
    labels = {
        LABEL_MANIFEST_VERSION: str(m.manifest_version),
        LABEL_MANIFEST: canonical_json(m),
        OCI_TITLE: m.app.name,
        OCI_VERSION: m.app.version,
    }
    if m.app.vendor is not None:
        labels[OCI_VENDOR] = m.app.vendor
    if m.app.description is not None:
        labels[OCI_DESCRIPTION] = m.app.description
    return labels


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ManifestError(LABEL_MANIFEST, f"duplicate JSON key {key!r}")
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise ManifestError(LABEL_MANIFEST, f"{name} is not valid JSON")


def manifest_from_labels(labels: Mapping[str, str]) -> Manifest:
    """Image labels -> Manifest, strictly: missing or disagreeing labels are ManifestErrors."""
    if LABEL_MANIFEST not in labels:
        raise ManifestError("", f"image has no sandbox manifest (no {LABEL_MANIFEST} label)")
    if LABEL_MANIFEST_VERSION not in labels:
        raise ManifestError(LABEL_MANIFEST_VERSION, "label is missing")
    raw_version = labels[LABEL_MANIFEST_VERSION]
    if not re.fullmatch(r"[0-9]{1,9}", raw_version):
        raise ManifestError(LABEL_MANIFEST_VERSION, f"must be a number, not {raw_version!r}")
    # Checked before the JSON so that a newer manifest is refused by its version, not its keys.
    label_version = check_manifest_version(int(raw_version), LABEL_MANIFEST_VERSION)
    text = labels[LABEL_MANIFEST]
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MANIFEST_BYTES:
        raise ManifestError(LABEL_MANIFEST, f"is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            LABEL_MANIFEST, f"invalid JSON at offset {exc.pos}: {exc.msg}"
        ) from None
    if not isinstance(doc, dict):
        raise ManifestError(LABEL_MANIFEST, f"must hold a JSON object, not {_type_name(doc)}")
    m = parse_manifest(doc)
    if m.manifest_version != label_version:
        raise ManifestError(
            LABEL_MANIFEST_VERSION,
            f"says {label_version} but the manifest says {m.manifest_version}",
        )
    expected = {OCI_TITLE: m.app.name, OCI_VERSION: m.app.version}
    if m.app.vendor is not None:
        expected[OCI_VENDOR] = m.app.vendor
    if m.app.description is not None:
        expected[OCI_DESCRIPTION] = m.app.description
    for label, value in expected.items():
        if label in labels and labels[label] != value:
            raise ManifestError(
                label, f"label says {labels[label]!r} but the manifest says {value!r}"
            )
    return m
