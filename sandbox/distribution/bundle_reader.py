"""Reads a .sbx bundle safely in one streaming pass; never extracts, writes or calls the engine.

The pass hashes the file and every member, decides each member as it comes (the _Walk
below), scans layers for the icon (layer_scan) and then checks the image (bundle_image). See
docs/bundle.md for the rules and what was measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import queue
import tarfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Protocol

from sandbox.distribution.bundle_format import (
    HEADER_NAME,
    MAX_HEADER_BYTES,
    BundleHeader,
    parse_header,
)
from sandbox.distribution.bundle_image import (
    BLOB,
    Member,
    Members,
    check_image,
    norm_name,
    top_icon,
)
from sandbox.distribution.layer_scan import LayerScanner
from sandbox.distribution.signing import SIGNATURE_NAME, Publisher, verify_signature
from sandbox.errors import BundleError

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

_TAR_BUFSIZE = 64 * 1024  # tarfile's stream buffer; larger makes its header reads copy more
# Member reads match tarfile's buffer: its join-and-slice copies then stay in the CPU cache
# (1 MiB reads measured 2-3x slower over a 421 MiB bundle).
_READ = _TAR_BUFSIZE
_ICON_SNIFF = 512


class _Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ReadLimits:
    """Caps on the outer archive; a hostile file hits one of these and is refused."""

    max_members: int = 10_000
    max_total_bytes: int = 16 * 1024**3
    max_json_bytes: int = 4 * 1024**2  # manifest.json, the image config, index.json
    max_retained_bytes: int = 64 * 1024**2  # all small JSON-looking members kept together
    max_icon_bytes: int = 1024**2
    check_chunk: int = 8 * 1024**2  # granularity of the re-check while loading


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every byte was checked; `stream_verified` re-checks while loading."""

    path: Path
    header: BundleHeader
    sha256: str  # of the whole file
    size: int
    icon: bytes | None  # the manifest's icon, read from the layers (last layer wins)
    prefix_digests: tuple[bytes, ...] = field(repr=False)  # sha256 of the first k chunks
    check_chunk: int = field(repr=False, default=ReadLimits.check_chunk)
    publisher: Publisher | None = None  # None: unsigned (a signature that fails is refused)


class _FileHasher:
    """Wraps the bundle file: whole-file sha256 plus the digest of every chunk-aligned prefix.

    The hashing runs in a worker thread (hashlib releases the GIL on large buffers), so it
    overlaps the tar walk and the member hashes on another core; `finish` waits for it.
    """

    _END: Final = b""

    def __init__(self, f: IO[bytes], chunk: int) -> None:
        self._f = f
        self._chunk = chunk
        self.hash = hashlib.sha256()
        self.pos = 0  # bytes read so far (the worker may not have hashed them yet)
        self.prefixes: list[bytes] = []
        # Bounded: a slow hash must hold the reader back rather than buffer the whole file.
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=512)
        self._worker = threading.Thread(target=self._run, name="bundle-hash", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        hashed = 0
        while data := self._queue.get():
            view = memoryview(data)
            while view:
                room = self._chunk - hashed % self._chunk
                part, view = view[:room], view[room:]
                self.hash.update(part)
                hashed += len(part)
                if hashed % self._chunk == 0:
                    self.prefixes.append(self.hash.copy().digest())

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if data:
            self.pos += len(data)
            self._queue.put(data)
        return data

    def finish(self) -> None:
        """Wait until every byte read is hashed; `hash` and `prefixes` are final after this."""
        if self._worker.is_alive():
            self._queue.put(self._END)
            self._worker.join()


class _MemberHasher:
    """Reads one member's data, hashing it and handing every byte to `sink` (if any)."""

    def __init__(
        self, src: _Reader, first: bytes, sink: Callable[[bytes], None] | None = None
    ) -> None:
        self._src = src
        self._pending = first
        self._sink = sink
        self.hash = hashlib.sha256(first)
        self.done = len(first)
        if sink is not None and first:
            sink(first)

    def read(self, n: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            if 0 <= n < len(data):
                data, self._pending = data[:n], data[n:]
            return data
        data = self._src.read(n if n >= 0 else _READ)
        self.hash.update(data)
        self.done += len(data)
        if self._sink is not None and data:
            self._sink(data)
        return data

    def drain(self) -> None:
        while self.read(_READ):
            pass


def _inside(target: str, member: str, what: str) -> str:
    if target.startswith("/"):
        raise BundleError(member, f"{what} points to an absolute path {target!r}")
    resolved = posixpath.normpath(target)
    if resolved == ".." or resolved.startswith("../") or resolved in (".", ""):
        raise BundleError(member, f"{what} {target!r} escapes the archive")
    return resolved


def verify_bundle(
    path: Path, limits: ReadLimits | None = None, progress: Progress | None = None
) -> VerifiedBundle:
    """Check every member of the bundle at `path`; BundleError names the first bad member."""
    limits = limits or ReadLimits()
    try:
        f = path.open("rb")
    except OSError as exc:
        raise BundleError(str(path), f"cannot open: {exc.strerror or exc}") from None
    with f:
        _advise_sequential(f)
        total = os.fstat(f.fileno()).st_size
        if total > limits.max_total_bytes:
            raise BundleError(str(path), f"is {total} bytes (at most {limits.max_total_bytes})")
        hasher = _FileHasher(f, limits.check_chunk)
        try:
            header, members = _walk(hasher, limits, progress, total)
            while hasher.read(_READ):  # bytes after the end-of-archive marker are still covered
                pass
        finally:
            hasher.finish()
    layers = check_image(header, members)
    if hasher.pos != total:
        raise BundleError(str(path), "changed size while it was read")
    publisher = _publisher(header, members)
    icon = top_icon(layers)
    return VerifiedBundle(
        path=path,
        header=header,
        sha256=hasher.hash.hexdigest(),
        size=total,
        icon=icon,
        prefix_digests=tuple(hasher.prefixes),
        check_chunk=limits.check_chunk,
        publisher=publisher,
    )


def _publisher(header: BundleHeader, members: Members) -> Publisher | None:
    """The signer, once the image checked out: the statement must match the verified header."""
    member = members.get(SIGNATURE_NAME)
    if member is None:
        return None
    if member.data is None:
        raise BundleError(SIGNATURE_NAME, "is not a small JSON file")
    return verify_signature(header, member.data)


class _Walk:
    """What the one pass over the outer tar has seen so far; each member is decided here."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.members: Members = {}
        self.header: BundleHeader | None = None
        self.icon_rel: str | None = None  # the icon's path inside a layer, once the header is read
        self.count = 0
        self.content = 0
        self.retained = 0

    def admit(self, info: tarfile.TarInfo) -> str:
        """The member's normalized name, once the archive-wide limits and order allow it."""
        limits = self.limits
        self.count += 1
        if self.count > limits.max_members:
            raise BundleError(info.name, f"more than {limits.max_members} members")
        name = norm_name(info.name, info.name)
        if name in self.members:
            raise BundleError(info.name, "appears twice in the archive")
        if self.header is None and name != HEADER_NAME:
            raise BundleError(info.name, f"the first member must be {HEADER_NAME}")
        if name == SIGNATURE_NAME and self.count != 2:
            raise BundleError(info.name, f"must come right after {HEADER_NAME}")
        self.content += info.size
        if self.content > limits.max_total_bytes:
            raise BundleError(info.name, f"content exceeds {limits.max_total_bytes} bytes")
        return name

    def add(self, tar: tarfile.TarFile, info: tarfile.TarInfo, name: str) -> None:
        if info.isdir():
            self.members[name] = Member(0)
        elif info.issym():
            target = posixpath.join(posixpath.dirname(name), info.linkname)
            self.members[name] = Member(0, link=_inside(target, info.name, "symlink"))
        elif info.islnk():
            target = _inside(info.linkname, info.name, "hard link")
            if target not in self.members:
                raise BundleError(info.name, f"hard link to {target!r}, not an earlier member")
            self.members[name] = Member(0, link=target)
        elif info.isreg():
            self.members[name] = self._regular(tar, info, name)
        else:
            raise BundleError(info.name, "is a device, fifo or other special file")
        if self.header is not None and self.icon_rel is None and self.header.manifest.app.icon:
            self.icon_rel = self.header.manifest.app.icon.lstrip("/")

    def _regular(self, tar: tarfile.TarFile, info: tarfile.TarInfo, name: str) -> Member:
        src = tar.extractfile(info)
        assert src is not None  # a regular member always has a file object
        first = src.read(_ICON_SNIFF)
        keep = first[:1] in (b"{", b"[") and info.size <= self.limits.max_json_bytes
        scanner = self._scanner(info, keep)
        stream = _MemberHasher(src, first, scanner.feed if scanner else None)
        member = Member(info.size)
        if name == HEADER_NAME:
            self.header = parse_header(_read_header(info, stream))
        elif keep:
            member.data = self._retain(info, stream)
        stream.drain()
        if stream.done != info.size:
            raise BundleError(info.name, "truncated: the file ends inside it")
        if scanner is not None:
            member.icon = scanner.result()
        member.sha256 = stream.hash.hexdigest()
        blob = BLOB.fullmatch(name)
        if blob and blob.group(1) != member.sha256:
            raise BundleError(info.name, f"content has sha256 {member.sha256}")
        return member

    def _scanner(self, info: tarfile.TarInfo, keep: bool) -> LayerScanner | None:
        """A layer-sized member (not kept JSON) is scanned for the icon once its path is known."""
        if self.icon_rel is not None and not keep and info.size >= 1024:
            return LayerScanner(self.icon_rel, self.limits.max_icon_bytes)
        return None

    def _retain(self, info: tarfile.TarInfo, stream: _MemberHasher) -> bytes:
        rest = bytearray()
        while chunk := stream.read(_READ):
            rest += chunk
        self.retained += len(rest)
        if self.retained > self.limits.max_retained_bytes:
            raise BundleError(info.name, "too much JSON in the archive")
        return bytes(rest)


def _read_header(info: tarfile.TarInfo, stream: _MemberHasher) -> bytes:
    if info.size > MAX_HEADER_BYTES:
        raise BundleError(info.name, f"larger than {MAX_HEADER_BYTES} bytes")
    data = bytearray()
    while chunk := stream.read(_READ):
        data += chunk
    return bytes(data)


def _walk(
    hasher: _FileHasher, limits: ReadLimits, progress: Progress | None, total: int
) -> tuple[BundleHeader, Members]:
    walk = _Walk(limits)
    name = "archive"
    try:
        with tarfile.open(fileobj=hasher, mode="r|", bufsize=_TAR_BUFSIZE) as tar:  # type: ignore[call-overload]
            for info in tar:
                name = walk.admit(info)
                walk.add(tar, info, name)
                if progress is not None:
                    progress(hasher.pos, total)
    except tarfile.TarError as exc:
        raise BundleError(name, f"not a valid archive here: {exc}") from None
    except EOFError:
        raise BundleError(name, "truncated: the file ends inside it") from None
    if walk.header is None:
        raise BundleError(HEADER_NAME, "missing: this is not a sandbox bundle")
    return walk.header, walk.members


def _advise_sequential(f: IO[bytes]) -> None:
    """Tell the kernel the file is read once front to back (larger readahead)."""
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):  # advice only: some filesystems do not take it
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)


def stream_verified(bundle: VerifiedBundle, progress: Progress | None = None) -> Iterator[bytes]:
    """The bundle's bytes for the engine, each chunk checked against the verified pass first.

    A file changed after verification raises BundleError before the changed chunk is yielded,
    so the engine receives a truncated archive and loads nothing. A worker thread reads and
    checks chunk k+1 while the caller sends chunk k: the check costs no wall time of its own,
    and still no byte leaves here before its prefix digest matched.
    """
    try:
        f = bundle.path.open("rb")
    except OSError as exc:
        raise BundleError(str(bundle.path), f"cannot open: {exc.strerror or exc}") from None
    with f, ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-recheck") as pool:
        _advise_sequential(f)
        check = _Recheck(bundle, f)
        pending = pool.submit(check.next_chunk)
        while chunk := pending.result():
            pending = pool.submit(check.next_chunk)
            yield chunk
            if progress is not None:
                progress(check.done, bundle.size)


class _Recheck:
    """Reads the verified file again chunk by chunk; every chunk-aligned prefix must hash as
    it did in `verify_bundle`, and the end must be the verified size and sha256."""

    def __init__(self, bundle: VerifiedBundle, f: IO[bytes]) -> None:
        self._bundle = bundle
        self._f = f
        self._hash = hashlib.sha256()
        self._index = 0
        self.done = 0  # bytes checked (yielded or about to be)

    def next_chunk(self) -> bytes:
        """The next checked chunk; b"" at a verified end; BundleError on any change."""
        bundle = self._bundle
        chunk = self._f.read(bundle.check_chunk)
        self._hash.update(chunk)
        self.done += len(chunk)
        if self.done > bundle.size:
            raise BundleError(str(bundle.path), "grew after it was verified")
        if len(chunk) == bundle.check_chunk:
            digests = bundle.prefix_digests
            expected = digests[self._index] if self._index < len(digests) else b""
            if self._hash.copy().digest() != expected:
                raise BundleError(str(bundle.path), "changed after it was verified")
            self._index += 1
        elif self.done != bundle.size or self._hash.hexdigest() != bundle.sha256:
            raise BundleError(str(bundle.path), "changed after it was verified")
        return chunk
