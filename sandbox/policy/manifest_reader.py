"""Reads a decoded manifest document field by field into the typed model; pure, no I/O.

Every problem is a ManifestError naming the field path, raised through the one schema reader;
the order of the reads below is the order in which problems are reported.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from sandbox.errors import ManifestError
from sandbox.host.names import UNVERIFIED_MARK, app_id_problem, unverified_of
from sandbox.policy.manifest_model import (
    MAX_ARG,
    MAX_ARGS,
    MAX_CATEGORIES,
    MAX_CATEGORY,
    MAX_CPUS,
    MAX_DESCRIPTION,
    MAX_ID,
    MAX_MEMORY,
    MAX_NAME,
    MAX_PATH,
    MAX_PATH_SEGMENT,
    MAX_PIDS,
    MAX_STORAGE,
    MAX_VENDOR,
    MAX_VERSION,
    MEMORY_UNITS,
    MIN_CPUS,
    MIN_MEMORY,
    MIN_PIDS,
    SUPPORTED_MANIFEST_VERSIONS,
    AppInfo,
    Capabilities,
    Limits,
    Manifest,
    StorageSpec,
)
from sandbox.policy.schema import FieldPath, Reader, Where, root, type_name
from sandbox.policy.vocabulary import STORAGE_NAME, AudioMode, DisplayRequest

_T = TypeVar("_T")

_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~:-]*")
# freedesktop menu categories are CamelCase words; vendor extensions start with "X-".
_CATEGORY = re.compile(r"[A-Z][A-Za-z0-9]*|X-[A-Za-z0-9][A-Za-z0-9-]*")
_MEMORY = re.compile(r"([1-9][0-9]{0,15})([KMGT]?)", re.IGNORECASE)  # 16 digits: > MAX_MEMORY
_BIDI_OVERRIDES: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Where a storage dir may not be mounted: host-like system trees the runtime or the image
# need intact, the runtime's own mount points (/run, /tmp with the X socket dir) and anything
# whose replacement would hide the image itself.
_SYSTEM_TREES: Final = (
    "/etc", "/proc", "/sys", "/dev", "/usr", "/bin", "/sbin", "/boot", "/run", "/var/run",
    "/tmp", "/var/lib/docker",
)  # fmt: skip
_WHOLE_TREES: Final = frozenset({"/", "/home", "/var", "/opt", "/srv", "/mnt", "/media"})


# --- field checkers: each raises ManifestError(path, problem) through the schema reader -------

_READ = Reader(fail=ManifestError, quote_keys=True)


def _string(value: object, path: Where, max_len: int) -> str:
    text = _READ.string(value, path)
    if not text:
        raise _READ.error(path, "must not be empty")
    _READ.length(text, path, max_len)
    if any(_is_hostile_char(c) for c in text):
        raise _READ.error(
            path, "must not contain NUL, newlines, other control or bidi-override characters"
        )
    return text


def _is_hostile_char(c: str) -> bool:
    # Control chars and line breaks would split `key=value` label lines and Dockerfile LABELs;
    # bidi overrides let a name look different on the review screen than it is.
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI_OVERRIDES


def _text(value: object, path: Where, max_len: int) -> str:
    text = _string(value, path, max_len)
    if text != text.strip():
        raise _READ.error(path, "must not start or end with whitespace")
    return text


def _abs_path(value: object, path: Where) -> str:
    text = _string(value, path, MAX_PATH)
    if not text.startswith("/"):
        raise _READ.error(path, f"path must be absolute, not {text!r}")
    if text == "/":
        return text
    if text.endswith("/"):
        raise _READ.error(path, f"path must not end with '/': {text!r}")
    for segment in text[1:].split("/"):
        _path_segment(segment, text, path)
    return text


def _path_segment(segment: str, text: str, path: Where) -> None:
    if segment == "":
        raise _READ.error(path, f"path must not contain '//': {text!r}")
    if segment in (".", ".."):
        raise _READ.error(path, f"path must not contain '{segment}' segments: {text!r}")
    if len(segment) > MAX_PATH_SEGMENT:
        raise _READ.error(path, f"path segment longer than {MAX_PATH_SEGMENT} characters")


def _is_under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _optional(table: Mapping[str, Any], key: str, read: Callable[[object], _T]) -> _T | None:
    return read(table[key]) if key in table else None


# --- [app] -------------------------------------------------------------------------------------


def _app_id(value: object) -> str:
    text = _string(value, "app.id", MAX_ID)
    problem = app_id_problem(text)
    if problem is not None:
        raise _READ.error("app.id", problem)
    if unverified_of(text) is not None:
        # the throwaway identities of uninstalled images: no manifest may claim one, or an
        # install (and its `uninstall --purge`) could take over a copy's data
        raise _READ.error(
            "app.id",
            f"{text!r} has the form of an unverified copy's identity "
            f"(…{UNVERIFIED_MARK}<hex>), which no app may claim",
        )
    return text


def _version(value: object) -> str:
    version = _text(value, "app.version", MAX_VERSION)
    if not _VERSION.fullmatch(version):
        raise _READ.error(
            "app.version",
            f"must start with a letter or digit and hold only A-Z a-z 0-9 . _ + ~ : -: {version!r}",
        )
    return version


def _argv(value: object, where: FieldPath, empty: str) -> tuple[str, ...]:
    """A command line: non-empty, bounded, its program an absolute path."""
    args = _READ.array(value, where, MAX_ARGS)
    if not args:
        raise _READ.error(where, empty)
    argv = tuple(_string(a, where.index(i), MAX_ARG) for i, a in enumerate(args))
    _abs_path(argv[0], where.index(0))
    return argv


def _categories(value: object) -> tuple[str, ...]:
    where = root("app", "categories")
    categories: list[str] = []
    for i, item in enumerate(_READ.array(value, where, MAX_CATEGORIES)):
        category = _string(item, where.index(i), MAX_CATEGORY)
        if not _CATEGORY.fullmatch(category):
            raise _READ.error(
                where.index(i),
                f"{category!r} is not a freedesktop category (CamelCase, or X-Name)",
            )
        if category in categories:
            raise _READ.error(where.index(i), f"duplicate category {category!r}")
        categories.append(category)
    return tuple(categories)


def _parse_app(value: object) -> AppInfo:
    table = _READ.table(value, "app")
    _READ.keys(
        table,
        root("app"),
        ("id", "name", "version", "command"),
        ("icon", "categories", "vendor", "description", "smoke"),
    )
    # The order of the reads is the order in which problems are reported.
    version = _version(table["version"])
    command = _argv(table["command"], root("app", "command"), "must not be empty")
    smoke = _optional(
        table,
        "smoke",
        lambda v: _argv(
            v, root("app", "smoke"), "must not be empty (leave it out to run `command`)"
        ),
    )
    categories = _categories(table.get("categories", []))
    return AppInfo(
        id=_app_id(table["id"]),
        name=_text(table["name"], "app.name", MAX_NAME),
        version=version,
        command=command,
        icon=_optional(table, "icon", lambda v: _abs_path(v, "app.icon")),
        categories=categories,
        vendor=_optional(table, "vendor", lambda v: _text(v, "app.vendor", MAX_VENDOR)),
        description=_optional(
            table, "description", lambda v: _text(v, "app.description", MAX_DESCRIPTION)
        ),
        smoke=smoke or (),
    )


# --- [capabilities] ----------------------------------------------------------------------------


def _parse_storage(value: object, app: AppInfo) -> tuple[StorageSpec, ...]:
    table = _READ.table(value, "capabilities.storage")
    if len(table) > MAX_STORAGE:
        raise _READ.error(
            "capabilities.storage", f"has {len(table)} entries (at most {MAX_STORAGE})"
        )
    specs: list[StorageSpec] = []
    for name, raw in table.items():
        specs.append(_storage_entry(str(name), raw, app, specs))
    return tuple(sorted(specs, key=lambda s: s.name))


def _storage_entry(name: str, raw: object, app: AppInfo, earlier: list[StorageSpec]) -> StorageSpec:
    where = root("capabilities", "storage").key(name)
    if not STORAGE_NAME.fullmatch(name):
        raise _READ.error(
            where, "storage names are 1-32 of a-z, 0-9, '_' or '-', starting with a letter"
        )
    path = _abs_path(raw, where)
    _not_a_system_dir(path, where)
    _hides_nothing(path, where, app)
    _overlaps_nothing(path, where, earlier)
    return StorageSpec(name=name, path=path)


def _not_a_system_dir(path: str, where: FieldPath) -> None:
    if path in _WHOLE_TREES:
        raise _READ.error(where, f"{path} is a whole system tree; use a dir inside it")
    for tree in _SYSTEM_TREES:
        if _is_under(path, tree):
            raise _READ.error(where, f"{path} is on or under the system dir {tree}")
    if path.split("/")[1].startswith("lib"):
        raise _READ.error(where, f"{path} is on or under a system library dir")


def _hides_nothing(path: str, where: FieldPath, app: AppInfo) -> None:
    hidden = [("app.command[0]", app.command[0])]
    if app.icon is not None:
        hidden.append(("app.icon", app.icon))
    for field_name, target in hidden:
        if _is_under(target, path):
            raise _READ.error(where, f"{path} would hide {field_name} {target}")


def _overlaps_nothing(path: str, where: FieldPath, earlier: list[StorageSpec]) -> None:
    for other in earlier:
        if other.path == path:
            raise _READ.error(where, f"{path} is also storage.{other.name}")
        if _is_under(path, other.path) or _is_under(other.path, path):
            raise _READ.error(where, f"{path} and storage.{other.name} ({other.path}) are nested")


def _display(raw: object) -> DisplayRequest:
    where = "capabilities.display"
    known = ", ".join(d.value for d in DisplayRequest)
    return _READ.choice(
        _READ.string(raw, where),
        where,
        DisplayRequest,
        lambda v: f"unknown display {v!r} (known: {known})",
    )


def _audio(value: object) -> frozenset[AudioMode]:
    where = root("capabilities", "audio")
    known = ", ".join(m.value for m in AudioMode)
    audio: set[AudioMode] = set()
    for i, raw in enumerate(_READ.array(value, where, len(AudioMode))):
        mode = _READ.choice(
            _READ.string(raw, where.index(i)),
            where.index(i),
            AudioMode,
            lambda v: f"unknown audio mode {v!r} (known: {known})",
        )
        if mode in audio:
            raise _READ.error(where.index(i), f"duplicate audio mode {raw!r}")
        audio.add(mode)
    return frozenset(audio)


def _parse_capabilities(value: object, app: AppInfo) -> Capabilities:
    table = _READ.table(value, "capabilities")
    _READ.keys(
        table, root("capabilities"), (), ("display", "audio", "gpu", "webcam", "gamepad",
                                          "network", "storage")
    )  # fmt: skip

    def flag(name: str) -> bool:
        return _READ.boolean(table.get(name, False), f"capabilities.{name}")

    return Capabilities(
        display=_optional(table, "display", _display),
        audio=_audio(table.get("audio", [])),
        gpu=flag("gpu"),
        webcam=flag("webcam"),
        gamepad=flag("gamepad"),
        network=flag("network"),
        storage=_parse_storage(table.get("storage", {}), app),
    )


# --- [limits] ----------------------------------------------------------------------------------


def parse_memory(value: object, path: str = "limits.memory") -> int:
    """`"512M"`, `"2G"` (binary units) or an integer of bytes, within the sane bounds."""
    if isinstance(value, str):
        match = _MEMORY.fullmatch(value)
        if match is None:
            raise ManifestError(
                path, f"must be bytes or a size like '512M' or '2G' (K, M, G, T), not {value!r}"
            )
        amount = int(match.group(1)) * MEMORY_UNITS[match.group(2).upper()]
        if not MIN_MEMORY <= amount <= MAX_MEMORY:
            raise ManifestError(path, f"must be between 32M and 1T, not {value}")
        return amount
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(path, f"must be a size string or an integer, not {type_name(value)}")
    if not MIN_MEMORY <= value <= MAX_MEMORY:
        raise ManifestError(path, f"must be between {MIN_MEMORY} and {MAX_MEMORY} bytes")
    return value


def _cpus(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _READ.error("limits.cpus", f"must be a number, not {type_name(raw)}")
    cpus = float(raw)
    if not math.isfinite(cpus) or not MIN_CPUS <= cpus <= MAX_CPUS:
        raise _READ.error("limits.cpus", f"must be between {MIN_CPUS} and {MAX_CPUS:g}, not {raw}")
    return cpus


def _parse_limits(value: object) -> Limits:
    table = _READ.table(value, "limits")
    _READ.keys(table, root("limits"), (), ("memory", "cpus", "pids"))
    cpus = _optional(table, "cpus", _cpus)  # read before memory: its problem is reported first
    return Limits(
        memory_bytes=_optional(table, "memory", parse_memory),
        cpus=cpus,
        pids=_optional(
            table, "pids", lambda v: _READ.integer(v, "limits.pids", MIN_PIDS, MAX_PIDS)
        ),
    )


# --- public API --------------------------------------------------------------------------------


def check_manifest_version(value: object, path: str = "manifest-version") -> int:
    """The manifest-version value -> int; versions this sandbox cannot read are refused."""
    version = _READ.integer(value, path, 0, 2**31)
    if version not in SUPPORTED_MANIFEST_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_MANIFEST_VERSIONS))
        raise ManifestError(
            path, f"unsupported manifest version {version} (this sandbox supports {supported})"
        )
    return version


def parse_manifest(doc: Mapping[str, Any]) -> Manifest:
    """A parsed TOML (or JSON) document -> Manifest; the first problem is a ManifestError."""
    table = _READ.table(doc, "")
    _READ.keys(table, root(), ("manifest-version", "app"), ("capabilities", "limits"))
    version = check_manifest_version(table["manifest-version"])
    app = _parse_app(table["app"])
    return Manifest(
        app=app,
        capabilities=_parse_capabilities(table.get("capabilities", {}), app),
        limits=_parse_limits(table.get("limits", {})),
        manifest_version=version,
    )
