"""Checks the docker-archive image a bundle walk found against itself and its header; no I/O.

It sees only what the streaming walk in bundle_reader recorded of each member (size, sha256,
link target, small JSON); it never reads the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from sandbox.distribution.bundle_format import HEADER_NAME, BundleHeader, LayerRecord
from sandbox.distribution.layer_scan import LayerScan
from sandbox.errors import BundleError, ManifestError
from sandbox.host.documents import load_json
from sandbox.policy.layers import adds_permissions
from sandbox.policy.manifest import manifest_from_labels

MANIFEST_JSON: Final = "manifest.json"
BLOB: Final = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_CONFIG = re.compile(r"([0-9a-f]{64})\.json")


@dataclass
class Member:
    """What the walk recorded of one archive member."""

    size: int
    sha256: str | None = None  # None for links and dirs
    link: str | None = None  # normalized target inside the archive
    data: bytes | None = None  # kept only for small JSON-looking members
    icon: LayerScan | None = None


Members = dict[str, Member]
Layer = tuple[str, Member] | None  # (member name, member), None where a partial bundle omits it


def norm_name(name: str, member: str) -> str:
    """A member name without `.` and empty segments; absolute names and `..` are refused."""
    if not name or name.startswith("/"):
        raise BundleError(member, "absolute or empty member name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BundleError(member, "member name contains '..'")
    if not parts:
        raise BundleError(member, "member name is the archive root")
    return "/".join(parts)


def _resolve(members: Members, name: str, where: str) -> tuple[str, Member]:
    seen = 0
    current = name
    while True:
        m = members.get(current)
        if m is None:
            raise BundleError(where, f"names {current!r}, which is not in the archive")
        if m.link is None:
            return current, m
        seen += 1
        if seen > 8:
            raise BundleError(where, f"{name!r}: too many levels of links")
        current = m.link


def _json(members: Members, name: str, where: str) -> Any:
    _, m = _resolve(members, name, where)
    if m.data is None:
        raise BundleError(name, "is not a small JSON file")
    return load_json(m.data, lambda _at, problem: BundleError(name, problem), max_bytes=len(m.data))


def _object(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """`doc[key]` when it is an object, {} when it is absent or null."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BundleError(where, f"{key} must be an object")
    return value


@dataclass(frozen=True)
class _Entry:
    """The one image manifest.json lists."""

    config: str
    layers: list[str]
    tags: list[str]


def _entry(members: Members) -> _Entry:
    entries = _json(members, MANIFEST_JSON, MANIFEST_JSON)
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise BundleError(MANIFEST_JSON, "must list exactly one image")
    entry = entries[0]
    config_name = entry.get("Config")
    layer_names = entry.get("Layers")
    tags = entry.get("RepoTags") or []
    if not isinstance(config_name, str):
        raise BundleError(MANIFEST_JSON, "Config must name the image config")
    if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
        raise BundleError(MANIFEST_JSON, "Layers must be a list of member names")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BundleError(MANIFEST_JSON, "RepoTags must be a list of names")
    return _Entry(config_name, layer_names, tags)


def _config(header: BundleHeader, members: Members, entry: _Entry) -> tuple[str, dict[str, Any]]:
    """The image config's member name and document; its digest must be the header's image id."""
    config_path, config = _resolve(members, norm_name(entry.config, MANIFEST_JSON), MANIFEST_JSON)
    named = _CONFIG.fullmatch(config_path) or BLOB.fullmatch(config_path)
    if named is None or named.group(1) != config.sha256:
        raise BundleError(config_path, f"config's name does not match its sha256 {config.sha256}")
    image_id = f"sha256:{config.sha256}"
    if image_id != header.image_id:
        raise BundleError(HEADER_NAME, f"image.id is {header.image_id}, the image is {image_id}")
    doc = _json(members, config_path, MANIFEST_JSON)
    if not isinstance(doc, dict):
        raise BundleError(config_path, "the image config must be a JSON object")
    return config_path, doc


def _diff_ids(
    header: BundleHeader, entry: _Entry, config_path: str, doc: dict[str, Any]
) -> list[str]:
    diff_ids = _object(doc, "rootfs", config_path).get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise BundleError(config_path, "rootfs.diff_ids must be a list of digests")
    if len(diff_ids) != len(entry.layers):
        raise BundleError(
            MANIFEST_JSON,
            f"lists {len(entry.layers)} layers but the config's rootfs has {len(diff_ids)}",
        )
    if len(header.layers) != len(diff_ids):
        raise BundleError(
            HEADER_NAME, f"lists {len(header.layers)} layers, the image has {len(diff_ids)}"
        )
    return diff_ids


def _layer(header: BundleHeader, members: Members, i: int, name: str, diff_id: str) -> Layer:
    record: LayerRecord = header.layers[i]
    if record.diff_id != diff_id:
        raise BundleError(
            HEADER_NAME, f"image.layers[{i}] says {record.diff_id}, the config {diff_id}"
        )
    try:
        path, layer = _resolve(members, norm_name(name, MANIFEST_JSON), MANIFEST_JSON)
    except BundleError:
        # A partial bundle leaves out exactly the layers its base reference names; the
        # engine or the client's reconstruction takes those from the local base.
        if header.base is not None and header.base.omits(diff_id):
            return None
        raise
    actual = f"sha256:{layer.sha256}"
    if actual != diff_id:
        raise BundleError(path, f"layer {i} has {actual}, the config says {diff_id}")
    if record.diff_id != diff_id or record.size != layer.size:
        raise BundleError(
            HEADER_NAME,
            f"image.layers[{i}] says {record.diff_id} of {record.size} bytes, the archive "
            f"has {diff_id} of {layer.size} bytes",
        )
    return path, layer


def _check_labels(header: BundleHeader, config_path: str, doc: dict[str, Any]) -> None:
    """The manifest the image's labels carry must be the one the header shows."""
    labels = _object(_object(doc, "config", config_path), "Labels", f"{config_path}: config")
    if not all(isinstance(v, str) for v in labels.values()):
        raise BundleError(config_path, "config.Labels must map names to strings")
    try:
        from_labels = manifest_from_labels(labels)
    except ManifestError as exc:
        raise BundleError(config_path, f"the image's manifest labels are bad: {exc}") from None
    if from_labels != header.manifest:
        more = adds_permissions(header.manifest, from_labels)
        detail = (
            f"the image asks for {', '.join(str(p) for p in more)} that the header does not show"
            if more
            else "they differ"
        )
        raise BundleError(HEADER_NAME, f"manifest disagrees with the image's labels: {detail}")


def check_image(header: BundleHeader, members: Members) -> list[Layer]:
    """The docker-archive image against itself and against the header; returns its layers,
    bottom first (None for one a partial bundle leaves out)."""
    entry = _entry(members)
    config_path, doc = _config(header, members, entry)
    diff_ids = _diff_ids(header, entry, config_path, doc)
    layers = [
        _layer(header, members, i, name, diff_id)
        for i, (name, diff_id) in enumerate(zip(entry.layers, diff_ids, strict=True))
    ]
    if sorted(entry.tags) != sorted(header.tags):
        raise BundleError(
            MANIFEST_JSON, f"RepoTags {entry.tags} differ from the header's {list(header.tags)}"
        )
    _check_labels(header, config_path, doc)
    return layers


def top_icon(layers: list[Layer]) -> bytes | None:
    """The icon as the stacked layers show it: the last layer that has the path wins; one
    that hides it (whiteout, non-directory ancestor) hides the lower copies."""
    icon: bytes | None = None
    for entry in layers:
        scan = entry[1].icon if entry is not None else None
        if scan is None:
            continue
        if scan.present:
            icon = scan.icon
        elif scan.removed:
            icon = None
    return icon
