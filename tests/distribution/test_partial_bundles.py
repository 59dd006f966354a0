"""Thin and delta bundles: the header's base reference is strict, and the reader accepts exactly
the layers that reference names being absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_factory import Knobs, build_bundle, layer_tar, tiny_manifest

from sandbox.distribution.bundle_format import BundleKind, dump_header, parse_header
from sandbox.distribution.bundle_reader import verify_bundle
from sandbox.errors import BundleError

LAYERS = [layer_tar({"etc/base": b"base"}), layer_tar({"opt/tiny/run": b"#!/bin/sh\n"})]


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "b.sbx"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", [BundleKind.THIN, BundleKind.DELTA])
def test_partial_bundle_without_the_base_layers_verifies(tmp_path: Path, kind: BundleKind) -> None:
    data = build_bundle(tiny_manifest(), LAYERS, Knobs(kind=kind, omit=1))
    bundle = verify_bundle(_write(tmp_path, data))
    header = bundle.header
    assert header.kind is kind and header.base is not None
    assert [r.diff_id for r in header.omitted] == list(header.base.diff_ids)
    assert len(header.carried) == 1
    assert parse_header(dump_header(header)) == header


def test_a_layer_missing_that_the_base_does_not_name_is_refused(tmp_path: Path) -> None:
    data = build_bundle(
        tiny_manifest(), LAYERS, Knobs(kind=BundleKind.THIN, omit=0, omit_extra=True)
    )
    with pytest.raises(BundleError, match="base"):
        verify_bundle(_write(tmp_path, data))


def test_a_full_bundle_may_not_leave_layers_out(tmp_path: Path) -> None:
    data = build_bundle(tiny_manifest(), LAYERS, Knobs(omit_extra=True))
    with pytest.raises(BundleError, match="not in the archive"):
        verify_bundle(_write(tmp_path, data))


def _doc(kind: str, base: object) -> bytes:
    good = build_bundle(tiny_manifest(), LAYERS, Knobs(kind=BundleKind.THIN, omit=1))
    header = verify_bundle_bytes(good)
    doc = json.loads(dump_header(header))
    doc["kind"] = kind
    if base is None:
        doc.pop("base", None)
    else:
        doc["base"] = base
    return json.dumps(doc).encode()


def verify_bundle_bytes(data: bytes):  # type: ignore[no-untyped-def]
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile("sandbox-bundle.json")
        assert f is not None
        return parse_header(f.read())


def test_base_reference_is_strict() -> None:
    good = json.loads(_doc("thin", {"name": None, "id": "sha256:" + "b" * 64, "diff-ids": []}))
    layers = [r["diff-id"] for r in good["image"]["layers"]]
    with pytest.raises(BundleError, match="base: is required"):
        parse_header(_doc("thin", None))
    with pytest.raises(BundleError, match="base: is not allowed"):
        parse_header(_doc("full", {"name": None, "id": "sha256:" + "b" * 64, "diff-ids": layers}))
    with pytest.raises(BundleError, match=r"base.diff-ids: must be a list"):
        parse_header(_doc("thin", {"name": None, "id": "sha256:" + "b" * 64, "diff-ids": []}))
    with pytest.raises(BundleError, match="proper prefix"):
        parse_header(_doc("thin", {"name": None, "id": "sha256:" + "b" * 64, "diff-ids": layers}))
    with pytest.raises(BundleError, match="proper prefix"):
        parse_header(
            _doc("thin", {"name": None, "id": "sha256:" + "b" * 64, "diff-ids": layers[1:]})
        )
    with pytest.raises(BundleError, match="shares no layer"):
        parse_header(
            _doc(
                "delta",
                {"name": None, "id": "sha256:" + "b" * 64, "diff-ids": ["sha256:" + "c" * 64]},
            )
        )
    with pytest.raises(BundleError, match=r"base.id"):
        parse_header(_doc("thin", {"name": None, "id": "x", "diff-ids": layers[:1]}))
    with pytest.raises(BundleError, match=r"base.name"):
        parse_header(
            _doc("thin", {"name": "UPPER", "id": "sha256:" + "b" * 64, "diff-ids": layers[:1]})
        )
    with pytest.raises(BundleError, match=r"base.extra"):
        parse_header(
            _doc(
                "thin",
                {"name": None, "id": "sha256:" + "b" * 64, "diff-ids": layers[:1], "extra": 1},
            )
        )
    with pytest.raises(BundleError, match="must be one of"):
        parse_header(_doc("half", None))
