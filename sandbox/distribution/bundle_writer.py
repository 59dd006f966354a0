"""Writes a .sbx bundle from a local image, streaming; never holds the image or installs it.

The engine's archive goes in whole, or without the layers a base reference names. Streams: the
image is never held in memory; only tar headers and manifest.json are parsed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from sandbox.distribution import archive
from sandbox.distribution.bundle_format import (
    HEADER_NAME,
    BaseRef,
    BundleHeader,
    BundleKind,
    LayerRecord,
    dump_header,
)
from sandbox.distribution.bundle_reader import Progress
from sandbox.distribution.signing import (
    SIGNATURE_NAME,
    SigningKeys,
    dump_signature,
    sign,
    statement_for,
)
from sandbox.engine.adapter import DockerAdapter, ImageDetails
from sandbox.errors import BundleError, LaunchError
from sandbox.policy.manifest import manifest_from_labels

_BLOCK: Final = 512
_TAR_BUFSIZE: Final = 64 * 1024


@dataclass(frozen=True)
class ExportResult:
    path: Path
    header: BundleHeader
    size: int  # bytes of the bundle file


class _Tee:
    """Gives the engine's archive to the tar parser and writes every byte it reads to `out`."""

    def __init__(
        self, chunks: Iterator[bytes], out: BinaryIO, on_write: Progress | None, total: int
    ) -> None:
        self._chunks = chunks
        self._out = out
        self._buf = memoryview(b"")
        self._on_write = on_write
        self._total = total
        self.written = 0

    def read(self, n: int = -1) -> bytes:
        if not self._buf:
            chunk = next(self._chunks, b"")
            if not chunk:
                return b""
            self._out.write(chunk)
            self.written += len(chunk)
            if self._on_write is not None:
                self._on_write(self.written, max(self._total, self.written))
            self._buf = memoryview(chunk)
        if n < 0 or n >= len(self._buf):
            data, self._buf = self._buf, memoryview(b"")
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return bytes(data)

    def drain(self) -> None:
        self._buf = memoryview(b"")
        while self.read():
            self._buf = memoryview(b"")


def _save_ref(ref: str, details: ImageDetails) -> tuple[str, tuple[str, ...]]:
    """What to ask the engine to save, and the tags the archive will then carry."""
    last = ref.rsplit("/", 1)[-1]
    tagged = ref if ":" in last or "@" in ref else f"{ref}:latest"
    if tagged in details.tags:
        return tagged, (tagged,)
    if details.tags:  # asked by id: keep the image's first name so the install is not <none>
        return details.tags[0], (details.tags[0],)
    return details.id, ()


def _add_head(
    writer: archive.ArchiveWriter,
    header_bytes: bytes,
    header: BundleHeader,
    signer: SigningKeys | None,
) -> None:
    """The header member and, when signing, the signature member right after it. The
    statement needs no layer sizes, so the placeholder header already says all it binds."""
    writer.add_bytes(HEADER_NAME, header_bytes)
    if signer is not None:
        signature = sign(statement_for(header), signer.key, signer.rotate_from)
        writer.add_bytes(SIGNATURE_NAME, dump_signature(signature))


def export_image(
    adapter: DockerAdapter,
    ref: str,
    out_path: Path,
    progress: Progress | None = None,
    *,
    signer: SigningKeys | None = None,
) -> ExportResult:
    """Write the image `ref` as a bundle at `out_path` (atomically: a failure leaves nothing);
    with `signer`, signed by that publisher key."""
    details = adapter.images.details(ref)
    if details is None:
        raise LaunchError(f"image {ref} not found")
    manifest = manifest_from_labels(details.labels)
    save_ref, tags = _save_ref(ref, details)
    placeholder = BundleHeader(
        manifest=manifest,
        image_id=details.id,
        layers=tuple(LayerRecord(d, 0) for d in details.diff_ids),
        tags=tags,
    )
    header_bytes = dump_header(placeholder)
    out_path = out_path.absolute()
    with _bundle_file(out_path) as out:
        _add_head(archive.ArchiveWriter(out), header_bytes, placeholder, signer)
        tee = _Tee(adapter.images.save_stream(save_ref), out, progress, details.size)
        sizes, manifest_json = _member_sizes(tee)
        tee.drain()
        layers = _layers(manifest_json, sizes, details)
        final = BundleHeader(manifest=manifest, image_id=details.id, layers=layers, tags=tags)
        size = _patch_header(out, final, len(header_bytes))
    return ExportResult(out_path, final, size)


@contextlib.contextmanager
def _bundle_file(out_path: Path) -> Iterator[BinaryIO]:
    """A temporary file beside `out_path` that becomes it only when the block ends cleanly."""
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w+b", buffering=1 << 20) as out:
            yield out
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _patch_header(out: BinaryIO, final: BundleHeader, length: int) -> int:
    """Rewrite the placeholder header in place (same length), sync, and return the file size."""
    out.flush()
    out.seek(_BLOCK)  # the header's data follows its one-block tar header (short ASCII name)
    out.write(dump_header(final, length))
    out.flush()
    os.fsync(out.fileno())
    return out.seek(0, os.SEEK_END)


def _member_sizes(tee: _Tee) -> tuple[dict[str, tuple[int, str | None]], bytes]:
    """{member: (size, symlink target)} of the engine's archive, and its manifest.json."""
    sizes: dict[str, tuple[int, str | None]] = {}
    manifest_json = b""
    try:
        with tarfile.open(fileobj=tee, mode="r|", bufsize=_TAR_BUFSIZE) as tar:  # type: ignore[call-overload]
            for member in tar:
                name = posixpath.normpath(member.name)
                link = None
                if member.issym():
                    link = posixpath.normpath(
                        posixpath.join(posixpath.dirname(name), member.linkname)
                    )
                elif member.islnk():
                    link = posixpath.normpath(member.linkname)
                sizes[name] = (member.size, link)
                if name == "manifest.json" and member.isreg():
                    f = tar.extractfile(member)
                    manifest_json = f.read() if f is not None else b""
    except tarfile.TarError as exc:
        raise BundleError("engine archive", f"the engine's archive is not a tar: {exc}") from None
    return sizes, manifest_json


def _layers(
    manifest_json: bytes, sizes: dict[str, tuple[int, str | None]], details: ImageDetails
) -> tuple[LayerRecord, ...]:
    try:
        entries = json.loads(manifest_json)
        names = [posixpath.normpath(n) for n in entries[0]["Layers"]]
    except (ValueError, KeyError, IndexError, TypeError):
        raise BundleError(
            "manifest.json", "the engine's archive has no usable manifest.json"
        ) from None
    if len(names) != len(details.diff_ids):
        raise BundleError("manifest.json", "layer count differs from the image's rootfs")
    records = []
    for listed, diff_id in zip(names, details.diff_ids, strict=True):
        name = listed
        for _ in range(8):
            size, link = sizes.get(name, (0, None))
            if link is None:
                break
            name = link
        if name not in sizes:
            raise BundleError(listed, "layer named in manifest.json is missing")
        records.append(LayerRecord(diff_id, size))
    return tuple(records)


def _base_name(ref: str, details: ImageDetails) -> str | None:
    last = ref.rsplit("/", 1)[-1]
    if ":" in last and ref in details.tags:
        return ref
    return details.tags[0] if details.tags else None


def partial_base(
    adapter: DockerAdapter, details: ImageDetails, kind: BundleKind, base_ref: str
) -> BaseRef:
    """The base reference a thin or delta bundle of `details` records, checked against it."""
    base = adapter.images.details(base_ref)
    if base is None:
        raise LaunchError(f"image {base_ref} not found")
    ref = BaseRef(_base_name(base_ref, base), base.id, base.diff_ids)
    if kind is BundleKind.THIN:
        k = len(base.diff_ids)
        if k >= len(details.diff_ids) or details.diff_ids[:k] != base.diff_ids:
            at = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(base.diff_ids, details.diff_ids, strict=False))
                    if a != b
                ),
                min(k, len(details.diff_ids)),
            )
            raise BundleError(
                "--base", f"{base_ref} is not a base of the image: they differ at layer {at}"
            )
        return ref
    old = manifest_from_labels(base.labels).app.id
    new = manifest_from_labels(details.labels).app.id
    if old != new:
        raise BundleError("--delta-from", f"{base_ref} is {old}, not a version of {new}")
    if not set(base.diff_ids) & set(details.diff_ids):
        raise BundleError("--delta-from", f"{base_ref} shares no layer with the image")
    return ref


def export_partial(
    adapter: DockerAdapter,
    ref: str,
    out_path: Path,
    *,
    kind: BundleKind,
    base_ref: str,
    progress: Progress | None = None,
    signer: SigningKeys | None = None,
) -> ExportResult:
    """Write `ref` as a thin bundle (the layers above `base_ref`) or a delta (the layers the
    older version `base_ref` lacks); the header records the base. Atomic, as export_image."""
    details = adapter.images.details(ref)
    if details is None:
        raise LaunchError(f"image {ref} not found")
    manifest = manifest_from_labels(details.labels)
    base = partial_base(adapter, details, kind, base_ref)
    save_ref, tags = _save_ref(ref, details)
    placeholder = BundleHeader(
        manifest=manifest,
        image_id=details.id,
        layers=tuple(LayerRecord(d, 0) for d in details.diff_ids),
        tags=tags,
        kind=kind,
        base=base,
    )
    header_bytes = dump_header(placeholder)
    omit = {d.removeprefix("sha256:") for d in base.diff_ids}
    out_path = out_path.absolute()
    with _bundle_file(out_path) as out:
        writer = archive.ArchiveWriter(out)
        _add_head(writer, header_bytes, placeholder, signer)

        def on_read(done: int) -> None:
            if progress is not None:
                progress(done, max(done, details.size))

        copied = archive.copy_archive(
            adapter.images.save_stream(save_ref),
            writer,
            drop_digest=lambda d: d in omit,
            on_read=on_read,
        )
        writer.finish()
        sizes = copied.sizes
        missing = [d for d in details.diff_ids if d.removeprefix("sha256:") not in sizes]
        if missing:
            raise BundleError("engine archive", f"has no tar for layer {missing[0]}")
        layers = tuple(LayerRecord(d, sizes[d.removeprefix("sha256:")]) for d in details.diff_ids)
        final = dataclasses.replace(placeholder, layers=layers)
        size = _patch_header(out, final, len(header_bytes))
    return ExportResult(out_path, final, size)
