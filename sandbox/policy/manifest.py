"""The app manifest's public face and its text forms: TOML and image labels in, document out; pure.

The typed model lives in manifest_model and the field rules in manifest_reader; their public
names are importable from here, where the rest of sandbox has always found them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from sandbox.errors import ManifestError
from sandbox.host.documents import load_json, load_toml
from sandbox.policy.manifest_model import (
    MANIFEST_VERSION,
    MAX_MANIFEST_BYTES,
    MAX_MEMORY,
    MEMORY_UNITS,
    MIN_MEMORY,
    SUPPORTED_MANIFEST_VERSIONS,
    AppInfo,
    Capabilities,
    Limits,
    Manifest,
    StorageSpec,
)
from sandbox.policy.manifest_reader import check_manifest_version, parse_manifest, parse_memory
from sandbox.policy.schema import type_name
from sandbox.policy.vocabulary import AudioMode

__all__ = [
    "LABEL_MANIFEST",
    "LABEL_MANIFEST_VERSION",
    "LABEL_NAMESPACE",
    "MANIFEST_VERSION",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMORY",
    "MIN_MEMORY",
    "OCI_DESCRIPTION",
    "OCI_TITLE",
    "OCI_VENDOR",
    "OCI_VERSION",
    "SUPPORTED_MANIFEST_VERSIONS",
    "AppInfo",
    "Capabilities",
    "Limits",
    "Manifest",
    "StorageSpec",
    "canonical_json",
    "check_manifest_version",
    "dump_manifest",
    "format_memory",
    "manifest_from_labels",
    "manifest_to_labels",
    "parse_manifest",
    "parse_manifest_toml",
    "parse_memory",
]

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

_AUDIO_ORDER: Final = (AudioMode.PLAYBACK, AudioMode.RECORD)


def parse_manifest_toml(text: str) -> Manifest:
    """The text of a sandbox.toml -> Manifest; TOML syntax errors name the line and column."""
    return parse_manifest(load_toml(text, ManifestError, max_bytes=MAX_MANIFEST_BYTES))


def format_memory(amount: int) -> str | int:
    """Bytes -> the largest exact unit string ("2G"), or the integer when none is exact."""
    for unit in ("T", "G", "M", "K"):
        if amount % MEMORY_UNITS[unit] == 0:
            return f"{amount // MEMORY_UNITS[unit]}{unit}"
    return amount


def _dump_app(app: AppInfo) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": app.id,
        "name": app.name,
        "version": app.version,
        "command": list(app.command),
    }
    optional: dict[str, Any] = {
        "icon": app.icon,
        "categories": list(app.categories) or None,
        "vendor": app.vendor,
        "description": app.description,
        "smoke": list(app.smoke) or None,
    }
    doc.update((key, value) for key, value in optional.items() if value is not None)
    return doc


def _dump_capabilities(caps: Capabilities) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if caps.display is not None:
        doc["display"] = caps.display.value
    doc["audio"] = [mode.value for mode in _AUDIO_ORDER if mode in caps.audio]
    doc.update(gpu=caps.gpu, webcam=caps.webcam, gamepad=caps.gamepad, network=caps.network)
    doc["storage"] = {s.name: s.path for s in caps.storage}
    return doc


def _dump_limits(limits: Limits) -> dict[str, Any]:
    memory = None if limits.memory_bytes is None else format_memory(limits.memory_bytes)
    doc = {"memory": memory, "cpus": limits.cpus, "pids": limits.pids}
    return {key: value for key, value in doc.items() if value is not None}


def dump_manifest(m: Manifest) -> dict[str, Any]:
    """Manifest -> a plain document that parse_manifest turns back into an equal Manifest."""
    doc: dict[str, Any] = {
        "manifest-version": m.manifest_version,
        "app": _dump_app(m.app),
        "capabilities": _dump_capabilities(m.capabilities),
    }
    limits = _dump_limits(m.limits)
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


def _label_version(labels: Mapping[str, str]) -> int:
    if LABEL_MANIFEST_VERSION not in labels:
        raise ManifestError(LABEL_MANIFEST_VERSION, "label is missing")
    raw_version = labels[LABEL_MANIFEST_VERSION]
    if not re.fullmatch(r"[0-9]{1,9}", raw_version):
        raise ManifestError(LABEL_MANIFEST_VERSION, f"must be a number, not {raw_version!r}")
    return check_manifest_version(int(raw_version), LABEL_MANIFEST_VERSION)


def _label_fail(_where: str, problem: str) -> ManifestError:
    return ManifestError(LABEL_MANIFEST, problem)


def _label_document(text: str) -> Mapping[str, Any]:
    doc = load_json(text, _label_fail, max_bytes=MAX_MANIFEST_BYTES)
    if not isinstance(doc, dict):
        raise ManifestError(LABEL_MANIFEST, f"must hold a JSON object, not {type_name(doc)}")
    return doc


def _check_oci_labels(labels: Mapping[str, str], m: Manifest) -> None:
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


def manifest_from_labels(labels: Mapping[str, str]) -> Manifest:
    """Image labels -> Manifest, strictly: missing or disagreeing labels are ManifestErrors."""
    if LABEL_MANIFEST not in labels:
        raise ManifestError("", f"image has no sandbox manifest (no {LABEL_MANIFEST} label)")
    # Checked before the JSON so that a newer manifest is refused by its version, not its keys.
    label_version = _label_version(labels)
    m = parse_manifest(_label_document(labels[LABEL_MANIFEST]))
    if m.manifest_version != label_version:
        raise ManifestError(
            LABEL_MANIFEST_VERSION,
            f"says {label_version} but the manifest says {m.manifest_version}",
        )
    _check_oci_labels(labels, m)
    return m
