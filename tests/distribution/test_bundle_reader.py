"""The bundle reader on in-memory bundles: good ones verify, each hostile kind names its member."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from bundle_factory import (
    PNG_48,
    Knobs,
    build_bundle,
    layer_tar,
    many_members_bundle,
    tiny_manifest,
)

from sandbox.distribution.bundle_format import HEADER_NAME, parse_header
from sandbox.distribution.bundle_reader import (
    ReadLimits,
    stream_verified,
    verify_bundle,
)
from sandbox.errors import BundleError


def _write(tmp_path: Path, data: bytes, name: str = "app.sbx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = size
    return info


def test_good_bundle_verifies_and_finds_icon(tmp_path: Path) -> None:
    manifest = tiny_manifest()
    path = _write(tmp_path, build_bundle(manifest))
    verified = verify_bundle(path)
    assert verified.header.manifest == manifest
    assert verified.icon == PNG_48
    assert verified.size == path.stat().st_size
    streamed = b"".join(stream_verified(verified))
    assert streamed == path.read_bytes()


def test_last_layer_wins_and_whiteouts_hide_the_icon(tmp_path: Path) -> None:
    manifest = tiny_manifest()
    base = layer_tar({"opt/tiny/run": b"x", "opt/tiny/icon.png": PNG_48})
    newer = layer_tar({"opt/tiny/icon.png": b"<svg xmlns='http://www.w3.org/2000/svg'/>"})
    hide = layer_tar({"opt/tiny/.wh.icon.png": b""})
    opaque = layer_tar({"opt/.wh..wh..opq": b"", "opt/other": b"y"})
    readd = layer_tar({"opt/.wh..wh..opq": b"", "opt/tiny/icon.png": PNG_48})
    cases = [
        ([base, newer], b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ([base, hide], None),
        ([base, opaque], None),
        ([base, hide, readd], PNG_48),
    ]
    for i, (layers, icon) in enumerate(cases):
        path = _write(tmp_path, build_bundle(manifest, layers), f"c{i}.sbx")
        assert verify_bundle(path).icon == icon, i


@pytest.mark.parametrize(
    ("extra", "member"),
    [
        ((_member("../../etc/evil", size=1), b"x"), "../../etc/evil"),
        ((_member("/etc/evil", size=1), b"x"), "/etc/evil"),
        ((_member("link", tarfile.SYMTYPE, "../../../etc/passwd"), None), "link"),
        ((_member("abs", tarfile.SYMTYPE, "/etc/passwd"), None), "abs"),
        ((_member("hard", tarfile.LNKTYPE, "../etc/shadow"), None), "hard"),
        ((_member("hard2", tarfile.LNKTYPE, "not-there"), None), "hard2"),
        ((_member("dev", tarfile.CHRTYPE), None), "dev"),
        ((_member("fifo", tarfile.FIFOTYPE), None), "fifo"),
    ],
)
def test_hostile_outer_members_are_refused(
    tmp_path: Path, extra: tuple[tarfile.TarInfo, bytes | None], member: str
) -> None:
    path = _write(tmp_path, build_bundle(tiny_manifest(), knobs=Knobs(extra_members=[extra])))
    with pytest.raises(BundleError) as err:
        verify_bundle(path)
    assert err.value.member == member


def test_bad_layer_digest_names_the_layer(tmp_path: Path) -> None:
    path = _write(tmp_path, build_bundle(tiny_manifest(), knobs=Knobs(corrupt_layer=True)))
    with pytest.raises(BundleError) as err:
        verify_bundle(path)
    assert err.value.member.endswith("/layer.tar")
    assert "config says" in err.value.problem


def test_layer_count_mismatch(tmp_path: Path) -> None:
    layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})]
    data = build_bundle(tiny_manifest(), layers, Knobs(drop_layer_from_manifest_json=True))
    with pytest.raises(BundleError) as err:
        verify_bundle(_write(tmp_path, data))
    assert err.value.member == "manifest.json"
    assert "rootfs has 2" in err.value.problem


def test_header_claiming_fewer_capabilities_than_labels(tmp_path: Path) -> None:
    asks_webcam = tiny_manifest(extra_caps="webcam = true")
    data = build_bundle(asks_webcam, knobs=Knobs(header_manifest=tiny_manifest()))
    with pytest.raises(BundleError) as err:
        verify_bundle(_write(tmp_path, data))
    assert err.value.member == HEADER_NAME
    assert "webcam" in err.value.problem


def test_truncated_file(tmp_path: Path) -> None:
    data = build_bundle(tiny_manifest())
    content_end = len(data.rstrip(b"\0"))  # cutting only the end-of-archive zeros is harmless
    for cut in (len(data) // 2, 700, content_end - 10):
        with pytest.raises(BundleError) as err:
            verify_bundle(_write(tmp_path, data[:cut], f"cut{cut}.sbx"))
        assert "truncated" in err.value.problem or "not a valid archive" in err.value.problem


def test_too_many_members_stops_at_the_cap(tmp_path: Path) -> None:
    path = _write(tmp_path, many_members_bundle(tiny_manifest(), 100_000))
    with pytest.raises(BundleError) as err:
        verify_bundle(path)
    assert "more than 10000 members" in err.value.problem
    assert err.value.member == "m9999"


def test_total_size_cap(tmp_path: Path) -> None:
    path = _write(tmp_path, build_bundle(tiny_manifest()))
    with pytest.raises(BundleError, match="at most 4096"):
        verify_bundle(path, ReadLimits(max_total_bytes=4096))


def test_header_must_come_first(tmp_path: Path) -> None:
    data = build_bundle(tiny_manifest())
    path = _write(tmp_path, data)
    with tarfile.open(path) as tar:
        infos = [(i, tar.extractfile(i).read()) for i in tar.getmembers()]  # type: ignore[union-attr]
    reordered = tmp_path / "reordered.sbx"
    with tarfile.open(reordered, "w") as out:
        for info, blob in infos[1:] + infos[:1]:
            import io

            out.addfile(info, io.BytesIO(blob))
    with pytest.raises(BundleError, match="first member"):
        verify_bundle(reordered)


def test_file_changed_after_verification_stops_the_stream(tmp_path: Path) -> None:
    path = _write(tmp_path, build_bundle(tiny_manifest()))
    verified = verify_bundle(path, ReadLimits(check_chunk=1024))
    raw = bytearray(path.read_bytes())
    raw[3000] ^= 0xFF
    path.write_bytes(bytes(raw))
    chunks = []
    with pytest.raises(BundleError, match="changed after it was verified"):
        for chunk in stream_verified(verified):
            chunks.append(chunk)
    assert sum(map(len, chunks)) < 3000  # the changed chunk never left


def test_header_parse_is_strict() -> None:
    with pytest.raises(BundleError, match="kind"):
        parse_header(
            b'{"format":"org.sandbox-apps.bundle","format-version":1,"kind":"thin",'
            b'"manifest":{},"image":{}}'
        )
    with pytest.raises(BundleError, match="unknown key"):
        parse_header(b'{"format":"x","extra":1}')


def test_oci_layout_archive_verifies(tmp_path: Path) -> None:
    """Docker 25+ `docker save` output: config and layers as blobs/sha256/*, plus index.json."""
    manifest = tiny_manifest()
    data = build_bundle(manifest, knobs=Knobs(oci_layout=True))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert {"index.json", "oci-layout", "manifest.json"} <= set(names)
    assert not any(n.endswith("layer.tar") for n in names)
    verified = verify_bundle(_write(tmp_path, data))
    assert verified.header.manifest == manifest
    assert verified.icon == PNG_48
    assert b"".join(stream_verified(verified)) == data


def test_oci_layout_blob_with_a_bad_digest_is_named(tmp_path: Path) -> None:
    data = build_bundle(tiny_manifest(), knobs=Knobs(oci_layout=True, corrupt_layer=True))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        blob = next(
            n
            for n in tar.getnames()
            if n.startswith("blobs/sha256/") and tar.getmember(n).size > 1024
        )
    with pytest.raises(BundleError) as caught:
        verify_bundle(_write(tmp_path, data))
    assert caught.value.member == blob
    assert "content has sha256" in caught.value.problem


def _tar(fmt: int, entries: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """(name, data or None for a dir, type) -> a tar in `fmt`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


LONG = "opt/" + "a-long-directory-name/" * 8 + "icon.png"  # > 100 bytes: prefix, pax or GNU


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("chunk", [1, 511, 512, 4096, 1 << 20])
def test_layer_scanner_reads_long_names_in_every_format(fmt: int, chunk: int) -> None:
    from sandbox.distribution.layer_scan import LayerScanner

    layer = _tar(
        fmt,
        [
            ("opt", None, tarfile.DIRTYPE),
            ("opt/big", b"x" * 5000, tarfile.REGTYPE),
            ("opt/link", None, tarfile.SYMTYPE),
            (LONG, PNG_48, tarfile.REGTYPE),
            ("opt/after", b"y" * 700, tarfile.REGTYPE),
        ],
    )
    scanner = LayerScanner(LONG, 1 << 20)
    for i in range(0, len(layer), chunk):
        scanner.feed(layer[i : i + chunk])
    scan = scanner.result()
    assert scan.present and scan.icon == PNG_48 and not scan.removed


def test_layer_scanner_sees_whiteouts_and_gives_up_on_garbage() -> None:
    from sandbox.distribution.layer_scan import LayerScanner

    hide = _tar(tarfile.PAX_FORMAT, [(f"{LONG.rsplit('/', 1)[0]}/.wh.icon.png", b"", b"0")])
    scanner = LayerScanner(LONG, 1 << 20)
    scanner.feed(hide)
    assert scanner.result().removed and not scanner.result().present
    garbage = LayerScanner(LONG, 1 << 20)
    garbage.feed(b"\x01" * 4096)  # not a tar header
    assert garbage.result() == type(garbage.result())()
    too_big = _tar(tarfile.USTAR_FORMAT, [(LONG, b"z" * 3000, b"0")])
    small = LayerScanner(LONG, 1024)
    small.feed(too_big)
    assert small.result().present and small.result().icon is None
