"""Builds small docker-archive bundles in memory (loadable by a real engine) and hostile ones."""

# Two layouts: the classic one (<id>/layer.tar, <config>.json) and Docker 25+'s `docker save`
# (OCI layout: oci-layout, index.json and blobs/sha256/*, with manifest.json naming the blobs).

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sandbox.distribution.bundle_format import (
    HEADER_NAME,
    BaseRef,
    BundleHeader,
    BundleKind,
    LayerRecord,
    dump_header,
)
from sandbox.policy.manifest import Manifest, manifest_to_labels, parse_manifest_toml

# 1x1 and 48x48 PNG headers are all the installer reads for the size; a tiny valid PNG body
PNG_48 = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x000\x00\x00\x000\x08\x02\x00\x00\x00"
    b"\xd8`n\xd0\x00\x00\x00\x0cIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def manifest_text(version: str = "1.0.0", extra_caps: str = "") -> str:
    return f"""manifest-version = 1
[app]
id = "org.sandbox.TinyTest"
name = "Tiny Test"
version = "{version}"
command = ["/opt/tiny/run"]
icon = "/opt/tiny/icon.png"
categories = ["Utility"]
description = "A tiny app for bundle tests"
[capabilities]
display = "x11"
audio = ["playback"]
{extra_caps}
[capabilities.storage]
saves = "/home/app/saves"
"""


def tiny_manifest(version: str = "1.0.0", extra_caps: str = "") -> Manifest:
    return parse_manifest_toml(manifest_text(version, extra_caps))


def layer_tar(files: Mapping[str, bytes], extra: Sequence[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


@dataclass
class Knobs:
    """Ways to make a bundle wrong; the default makes a good one."""

    header_manifest: Manifest | None = None  # a header that disagrees with the labels
    corrupt_layer: bool = False  # flip a byte after the digests were taken
    drop_layer_from_manifest_json: bool = False
    extra_members: list[tuple[tarfile.TarInfo, bytes | None]] = field(default_factory=list)
    tags: tuple[str, ...] = ("sandbox-test/tiny:1.0.0",)
    kind: BundleKind = BundleKind.FULL
    omit: int = 0  # a partial bundle: leave out the first `omit` layers, naming them as the base
    omit_extra: bool = False  # also leave out a layer the base reference does not name
    oci_layout: bool = False  # Docker 25+ `docker save`: blobs/sha256/*, index.json, oci-layout


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_bundle(
    manifest: Manifest, layers: Sequence[bytes] | None = None, knobs: Knobs | None = None
) -> bytes:
    knobs = knobs or Knobs()
    if layers is None:
        layers = [
            layer_tar({"opt/tiny/run": b"#!/bin/sh\necho tiny\n", "opt/tiny/icon.png": PNG_48})
        ]
    diff_ids = [f"sha256:{_sha(layer)}" for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": manifest_to_labels(manifest), "Cmd": list(manifest.app.command)},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "bundle_factory"} for _ in layers],
    }
    config_bytes = json.dumps(config).encode()
    config_hex = _sha(config_bytes)
    if knobs.oci_layout:
        layer_names = [f"blobs/sha256/{_sha(layer)}" for layer in layers]
        config_name = f"blobs/sha256/{config_hex}"
    else:
        layer_names = [f"{_sha(layer)}/layer.tar" for layer in layers]
        config_name = f"{config_hex}.json"
    listed = layer_names[:-1] if knobs.drop_layer_from_manifest_json else layer_names
    manifest_json = json.dumps(
        [{"Config": config_name, "RepoTags": list(knobs.tags), "Layers": listed}]
    ).encode()
    header = BundleHeader(
        manifest=knobs.header_manifest or manifest,
        image_id=f"sha256:{config_hex}",
        layers=tuple(LayerRecord(d, len(layer)) for d, layer in zip(diff_ids, layers, strict=True)),
        tags=knobs.tags,
        kind=knobs.kind,
        base=(
            BaseRef("sandbox-test/tiny-base:1", "sha256:" + "b" * 64, tuple(diff_ids[: knobs.omit]))
            if knobs.kind.partial
            else None
        ),
    )
    members: list[tuple[str, bytes]] = [(HEADER_NAME, dump_header(header))]
    skip = knobs.omit + (1 if knobs.omit_extra else 0)
    for i, (name, layer) in enumerate(zip(layer_names, layers, strict=True)):
        if i < skip:
            continue
        stored = (
            layer[:600] + bytes([layer[600] ^ 0xFF]) + layer[601:] if knobs.corrupt_layer else layer
        )
        members.append((name, stored))
    members.append((config_name, config_bytes))
    if knobs.oci_layout:
        members += _oci_members(config_hex, len(config_bytes), layers, knobs.tags)
    members.append(("manifest.json", manifest_json))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        first = True
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
            if first:
                for extra, payload in knobs.extra_members:
                    tar.addfile(extra, io.BytesIO(payload) if payload is not None else None)
                first = False
    return buf.getvalue()


def _oci_members(
    config_hex: str, config_size: int, layers: Sequence[bytes], tags: Sequence[str]
) -> list[tuple[str, bytes]]:
    """The OCI image manifest blob, index.json and oci-layout, as Docker 25+ writes them."""
    image_manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{config_hex}",
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{_sha(layer)}",
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{_sha(image_manifest)}",
                    "size": len(image_manifest),
                    "annotations": {"io.containerd.image.name": tags[0]} if tags else {},
                }
            ],
        }
    ).encode()
    return [
        (f"blobs/sha256/{_sha(image_manifest)}", image_manifest),
        ("index.json", index),
        ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
    ]


def many_members_bundle(manifest: Manifest, count: int) -> bytes:
    """A header then `count` empty members, written as raw ustar headers (fast)."""
    out = bytearray()
    head = tarfile.TarInfo(HEADER_NAME)
    data = dump_header(
        BundleHeader(
            manifest=manifest,
            image_id="sha256:" + "0" * 64,
            layers=(LayerRecord("sha256:" + "0" * 64, 0),),
        )
    )
    head.size = len(data)
    out += head.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)
    template = bytearray(tarfile.TarInfo("x").tobuf(format=tarfile.USTAR_FORMAT))
    template[148:156] = b" " * 8
    base = sum(template) - sum(template[0:100])
    for i in range(count):
        name = f"m{i}".encode()
        block = bytearray(template)
        block[0:100] = name + b"\0" * (100 - len(name))
        block[148:156] = b"%06o\0 " % (base + sum(name))
        out += block
    out += b"\0" * 1024
    return bytes(out)
