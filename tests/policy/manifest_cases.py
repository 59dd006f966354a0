"""Shared fixtures for manifest tests: a valid document, the bad-manifest table, a TOML writer."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def valid_doc() -> dict[str, Any]:
    return {
        "manifest-version": 1,
        "app": {
            "id": "com.example.Game",
            "name": "Example Game",
            "version": "1.2.0",
            "command": ["/opt/game/bin/game", "--fullscreen"],
            "icon": "/opt/game/icon.png",
            "categories": ["Game", "X-Retro"],
            "vendor": "Example Studio",
            "description": "A small platform game",
        },
        "capabilities": {
            "display": "wayland-or-x11",
            "audio": ["playback"],
            "gpu": True,
            "gamepad": True,
            "network": False,
            "storage": {"saves": "/home/app/.local/share/game"},
        },
        "limits": {"memory": "2G", "cpus": 1.5, "pids": 512},
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    keys = path.split("/")

    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    keys = path.split("/")

    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]

    return mutate


def _storage(**paths: str) -> Callable[[dict[str, Any]], None]:
    return _set("capabilities/storage", dict(paths))


@dataclass(frozen=True)
class Bad:
    kind: str
    mutate: Callable[[dict[str, Any]], None]
    field: str  # the ManifestError's field path
    problem: str  # a fragment the problem must contain


BAD: tuple[Bad, ...] = (
    Bad("unknown top-level key", _set("extra", 1), "extra", "unknown key"),
    Bad("unknown app key", _set("app/homepage", "x"), "app.homepage", "unknown key"),
    Bad("unknown capability", _set("capabilities/bluetooth", True), "capabilities.bluetooth",
        "known: audio, display, gamepad, gpu, network, storage, webcam"),
    Bad("unknown limits key", _set("limits/swap", "1G"), "limits.swap", "unknown key"),
    Bad("odd unknown key is quoted", _set("app/a b", 1), 'app."a b"', "unknown key"),
    Bad("missing manifest-version", _delete("manifest-version"), "manifest-version",
        "is required"),
    Bad("unsupported manifest-version", _set("manifest-version", 2), "manifest-version",
        "unsupported manifest version 2 (this sandbox supports 1)"),
    Bad("boolean manifest-version", _set("manifest-version", True), "manifest-version",
        "must be an integer, not a boolean"),
    Bad("missing app", _delete("app"), "app", "is required"),
    Bad("app not a table", _set("app", ["x"]), "app", "must be a table"),
    Bad("missing app.command", _delete("app/command"), "app.command", "is required"),
    Bad("id with one segment", _set("app/id", "Game"), "app.id", "at least 3 segments"),
    Bad("id with two segments", _set("app/id", "example.Game"), "app.id", "at least 3 segments"),
    Bad("id segment starting with a digit", _set("app/id", "com.1example.Game"), "app.id",
        "not start with a digit"),
    Bad("id with '-' before the last segment", _set("app/id", "com.ex-ample.Game"), "app.id",
        "last segment only"),
    Bad("id with an empty segment", _set("app/id", "com..Game"), "app.id", "segment ''"),
    Bad("id longer than 255", _set("app/id", "com.example." + "a" * 250), "app.id",
        "at most 255"),
    Bad("id not a string", _set("app/id", 42), "app.id", "must be a string, not an integer"),
    Bad("id of an unverified copy", _set("app/id", "com.example.Game-unverified-" + "ab" * 8),
        "app.id", "which no app may claim"),
    Bad("empty name", _set("app/name", ""), "app.name", "must not be empty"),
    Bad("name longer than 128", _set("app/name", "n" * 129), "app.name", "at most 128"),
    Bad("name with a newline", _set("app/name", "Game\nEvil"), "app.name", "newlines"),
    Bad("name with NUL", _set("app/name", "Game\x00"), "app.name", "NUL"),
    Bad("name with a bidi override", _set("app/name", "Game\u202eexe"), "app.name", "bidi"),
    Bad("name with surrounding spaces", _set("app/name", " Game"), "app.name", "whitespace"),
    Bad("empty version", _set("app/version", ""), "app.version", "must not be empty"),
    Bad("version with a space", _set("app/version", "1.0 beta"), "app.version",
        "must start with a letter or digit"),
    Bad("empty command", _set("app/command", []), "app.command", "must not be empty"),
    Bad("command as a string", _set("app/command", "/opt/game/bin/game"), "app.command",
        "must be an array, not a string"),
    Bad("relative command", _set("app/command", ["game"]), "app.command[0]",
        "path must be absolute"),
    Bad("command with '..'", _set("app/command", ["/opt/../bin/sh"]), "app.command[0]", "'..'"),
    Bad("non-string argument", _set("app/command", ["/bin/game", 3]), "app.command[1]",
        "must be a string, not an integer"),
    Bad("boolean argument", _set("app/command", ["/bin/game", True]), "app.command[1]",
        "must be a string, not a boolean"),
    Bad("65 arguments", _set("app/command", ["/bin/game"] + ["-v"] * 64), "app.command",
        "at most 64"),
    Bad("argument longer than 1024", _set("app/command", ["/bin/game", "x" * 1025]),
        "app.command[1]", "at most 1024"),
    Bad("relative icon", _set("app/icon", "icon.png"), "app.icon", "path must be absolute"),
    Bad("17 categories", _set("app/categories", [f"X-C{i}" for i in range(17)]),
        "app.categories", "at most 16"),
    Bad("bad category", _set("app/categories", ["Game", "game!"]), "app.categories[1]",
        "not a freedesktop category"),
    Bad("duplicate category", _set("app/categories", ["Game", "Game"]), "app.categories[1]",
        "duplicate"),
    Bad("vendor longer than 128", _set("app/vendor", "v" * 129), "app.vendor", "at most 128"),
    Bad("description longer than 1024", _set("app/description", "d" * 1025), "app.description",
        "at most 1024"),
    Bad("unknown display", _set("capabilities/display", "wayland-only"), "capabilities.display",
        "known: wayland, x11, x11-trusted, wayland-or-x11"),
    Bad("display as a boolean", _set("capabilities/display", True), "capabilities.display",
        "must be a string, not a boolean"),
    Bad("audio as a string", _set("capabilities/audio", "playback"), "capabilities.audio",
        "must be an array"),
    Bad("unknown audio mode", _set("capabilities/audio", ["speaker"]), "capabilities.audio[0]",
        "known: playback, record"),
    Bad("three audio modes", _set("capabilities/audio", ["playback", "record", "playback"]),
        "capabilities.audio", "at most 2"),
    Bad("duplicate audio mode", _set("capabilities/audio", ["record", "record"]),
        "capabilities.audio[1]", "duplicate"),
    Bad("gpu as a string", _set("capabilities/gpu", "yes"), "capabilities.gpu",
        "must be true or false, not a string"),
    Bad("network as an integer", _set("capabilities/network", 1), "capabilities.network",
        "must be true or false, not an integer"),
    Bad("storage not a table", _set("capabilities/storage", "saves"), "capabilities.storage",
        "must be a table"),
    Bad("relative storage path", _storage(saves="home/app/saves"), "capabilities.storage.saves",
        "path must be absolute"),
    Bad("storage path with '//'", _storage(saves="/home//app"), "capabilities.storage.saves",
        "'//'"),
    Bad("storage path with '.'", _storage(saves="/home/app/./saves"),
        "capabilities.storage.saves", "'.' segments"),
    Bad("storage path with trailing '/'", _storage(saves="/home/app/saves/"),
        "capabilities.storage.saves", "must not end with '/'"),
    Bad("storage path with a newline", _storage(saves="/home/app/sa\nves"),
        "capabilities.storage.saves", "newlines"),
    Bad("storage on /", _storage(saves="/"), "capabilities.storage.saves", "whole system tree"),
    Bad("storage on /home", _storage(saves="/home"), "capabilities.storage.saves",
        "whole system tree"),
    Bad("storage under /etc", _storage(saves="/etc/game"), "capabilities.storage.saves",
        "system dir /etc"),
    Bad("storage under /proc", _storage(saves="/proc/self"), "capabilities.storage.saves",
        "system dir /proc"),
    Bad("storage on /tmp", _storage(saves="/tmp"), "capabilities.storage.saves",
        "system dir /tmp"),
    Bad("storage under /tmp/.X11-unix", _storage(saves="/tmp/.X11-unix"),
        "capabilities.storage.saves", "system dir /tmp"),
    Bad("storage under /var/run", _storage(saves="/var/run/app"), "capabilities.storage.saves",
        "system dir /var/run"),
    Bad("storage under /var/lib/docker", _storage(saves="/var/lib/docker/x"),
        "capabilities.storage.saves", "system dir /var/lib/docker"),
    Bad("storage under /lib64", _storage(saves="/lib64/app"), "capabilities.storage.saves",
        "system library dir"),
    Bad("storage hiding the command", _storage(saves="/opt/game"), "capabilities.storage.saves",
        "would hide app.command[0]"),
    Bad("storage paths nested", _storage(a="/home/app/data", b="/home/app/data/saves"),
        "capabilities.storage.b", "nested"),
    Bad("storage path duplicated", _storage(a="/home/app/data", b="/home/app/data"),
        "capabilities.storage.b", "also storage.a"),
    Bad("bad storage name", _storage(Saves="/home/app/saves"), "capabilities.storage.Saves",
        "storage names are"),
    Bad("33 storage entries", _set("capabilities/storage",
                                   {f"s{i}": f"/home/app/s{i}" for i in range(33)}),
        "capabilities.storage", "at most 32"),
    Bad("memory as words", _set("limits/memory", "lots"), "limits.memory", "size like '512M'"),
    Bad("memory too small", _set("limits/memory", "1K"), "limits.memory", "between 32M and 1T"),
    Bad("memory too large", _set("limits/memory", 2 * 1024**4), "limits.memory",
        "between"),
    Bad("memory as a boolean", _set("limits/memory", True), "limits.memory",
        "not a boolean"),
    Bad("cpus zero", _set("limits/cpus", 0), "limits.cpus", "between 0.01 and 1024"),
    Bad("cpus nan", _set("limits/cpus", math.nan), "limits.cpus", "between"),
    Bad("cpus inf", _set("limits/cpus", math.inf), "limits.cpus", "between"),
    Bad("cpus as a string", _set("limits/cpus", "2"), "limits.cpus", "must be a number"),
    Bad("pids too few", _set("limits/pids", 1), "limits.pids", "between 8 and"),
    Bad("pids as a float", _set("limits/pids", 64.0), "limits.pids", "must be an integer"),
)  # fmt: skip


def bad_doc(case: Bad) -> dict[str, Any]:
    doc = copy.deepcopy(valid_doc())
    case.mutate(doc)
    return doc


def to_toml(doc: dict[str, Any]) -> str:
    """A tiny TOML writer for tests: every table inline, strings as JSON (valid TOML)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if math.isinf(v) else repr(v))
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(type(v))

    return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in doc.items())
