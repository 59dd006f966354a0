"""docker-archive surgery by streaming: copy an engine archive leaving layers out; no engine calls.

A layer's identity (its diff_id) is the sha256 of its tar, known only once the member has
streamed through; the writer therefore writes every member as it comes and, when the digest
says the layer is to be left out, truncates the output back to where the member began. The
image is never held in memory and no byte is written twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Final

from sandbox.errors import BundleError
from sandbox.host.documents import load_json

_BLOCK: Final = 512
_COPY: Final = 1 << 20
_TAR_BUFSIZE: Final = 64 * 1024
MAX_SMALL_JSON: Final = 4 * 1024**2
# Members of the engine's archive that describe the image as a whole: a rewritten archive
# writes its own, so the copied ones must not come along.
IMAGE_LEVEL: Final = frozenset({"manifest.json", "repositories", "index.json", "oci-layout"})


class _ChunkReader:
    """A file-like view of an iterator of byte chunks (what tarfile's stream mode reads)."""

    def __init__(self, chunks: Iterator[bytes], on_read: Callable[[int], None] | None) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")
        self._on_read = on_read
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        if not self._buf:
            chunk = next(self._chunks, b"")
            if not chunk:
                return b""
            self.done += len(chunk)
            if self._on_read is not None:
                self._on_read(self.done)
            self._buf = memoryview(chunk)
        if n < 0 or n >= len(self._buf):
            data, self._buf = self._buf, memoryview(b"")
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return bytes(data)


class ArchiveWriter:
    """Appends tar members to a seekable file; a member may be taken back once written."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self._out.write(info.tobuf(format=tarfile.PAX_FORMAT))
        self._out.write(data + b"\0" * (-len(data) % _BLOCK))

    def add_entry(self, info: tarfile.TarInfo) -> None:
        """A member without data: directory or link."""
        self._out.write(info.tobuf(format=tarfile.PAX_FORMAT))

    def add_stream(
        self, info: tarfile.TarInfo, src: IO[bytes], keep: Callable[[str], bool]
    ) -> tuple[str, bool]:
        """Copy a regular member, hashing it; `keep(sha256 hex)` false takes it back out."""
        start = self._out.tell()
        self._out.write(info.tobuf(format=tarfile.PAX_FORMAT))
        h = hashlib.sha256()
        left = info.size
        while left > 0:
            chunk = src.read(min(_COPY, left))
            if not chunk:
                raise BundleError(info.name, "truncated: the archive ends inside it")
            h.update(chunk)
            self._out.write(chunk)
            left -= len(chunk)
        self._out.write(b"\0" * (-info.size % _BLOCK))
        digest = h.hexdigest()
        if keep(digest):
            return digest, True
        self._out.seek(start)
        self._out.truncate()
        return digest, False

    def finish(self) -> None:
        self._out.write(b"\0" * (2 * _BLOCK))


@dataclass
class CopyResult:
    """What streamed through: every regular member's digest and size, links, small JSON."""

    digests: dict[str, str] = field(default_factory=dict)  # member name -> sha256 hex
    sizes: dict[str, int] = field(default_factory=dict)  # sha256 hex -> bytes
    links: dict[str, str] = field(default_factory=dict)  # member name -> target member name
    small: dict[str, bytes] = field(default_factory=dict)  # JSON-looking members kept
    kept: set[str] = field(default_factory=set)  # names of the members written

    def resolve(self, name: str) -> str | None:
        """The digest of the regular member `name` names (through links), None if absent."""
        for _ in range(8):
            if name in self.digests:
                return self.digests[name] if name in self.kept else None
            if name not in self.links:
                return None
            name = self.links[name]
        return None


def _name(raw: str) -> str:
    return posixpath.normpath(raw.lstrip("/"))


@dataclass(frozen=True)
class _Copy:
    """One copy's settings and where it writes; decides each member as it streams by."""

    writer: ArchiveWriter
    result: CopyResult
    drop_digest: Callable[[str], bool]
    drop_name: Callable[[str], bool]
    prefix: str
    entries: bool

    def member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        name = self.prefix + _name(info.name)
        if info.isreg():
            src = tar.extractfile(info)
            assert src is not None  # a regular member always has a file object
            self._regular(info, src, name)
        elif info.issym() or info.islnk():
            self._link(info, name)
        elif info.isdir():
            if self.entries and not self.drop_name(name):
                info.name = name
                self.writer.add_entry(info)
        else:
            raise BundleError(name, "is a device, fifo or other special file")

    def _regular(self, info: tarfile.TarInfo, src: IO[bytes], name: str) -> None:
        result = self.result
        small = info.size <= MAX_SMALL_JSON and name.endswith(".json")
        if self.drop_name(name):
            # still read: the caller may need it (manifest.json), a link may name it
            if small:
                result.small[name] = src.read()
                result.digests[name] = hashlib.sha256(result.small[name]).hexdigest()
            else:
                result.digests[name] = _hash_member(info, src)
            return
        digest, keep = self._small(name, src) if small else self._stream(info, src, name)
        result.digests[name] = digest
        result.sizes[digest] = info.size
        if keep:
            result.kept.add(name)

    def _small(self, name: str, src: IO[bytes]) -> tuple[str, bool]:
        data = src.read()
        digest = hashlib.sha256(data).hexdigest()
        self.result.small[name] = data
        keep = not self.drop_digest(digest)
        if keep:
            self.writer.add_bytes(name, data)
        return digest, keep

    def _stream(self, info: tarfile.TarInfo, src: IO[bytes], name: str) -> tuple[str, bool]:
        copy = tarfile.TarInfo(name)
        copy.size, copy.mode, copy.mtime = info.size, info.mode, info.mtime
        return self.writer.add_stream(copy, src, lambda d: not self.drop_digest(d))

    def _link(self, info: tarfile.TarInfo, name: str) -> None:
        target = (
            posixpath.join(posixpath.dirname(name), info.linkname)
            if info.issym()
            else info.linkname
        )
        self.result.links[name] = self.prefix + _name(target)
        if self.entries and not self.drop_name(name):
            info.name = name
            self.writer.add_entry(info)
            self.result.kept.add(name)


def copy_archive(
    chunks: Iterator[bytes],
    writer: ArchiveWriter,
    *,
    drop_digest: Callable[[str], bool],
    drop_name: Callable[[str], bool] = lambda _n: False,
    prefix: str = "",
    entries: bool = True,
    on_read: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    into: CopyResult | None = None,
) -> CopyResult:
    """Copy the tar `chunks` into `writer`, leaving out regular members whose sha256 hex
    `drop_digest` refuses and any member `drop_name` refuses; kept members are stored under
    `prefix` + their name (the names in the result); `entries` false drops every directory and
    link. `stop()` true ends the copy early (the rest is not read)."""
    result = into if into is not None else CopyResult()  # `into`: `stop` may look at it
    copy = _Copy(writer, result, drop_digest, drop_name, prefix, entries)
    reader = _ChunkReader(chunks, on_read)
    try:
        with tarfile.open(fileobj=reader, mode="r|", bufsize=_TAR_BUFSIZE) as tar:  # type: ignore[call-overload]
            for info in tar:
                copy.member(tar, info)
                if stop is not None and stop():
                    break
    except tarfile.TarError as exc:
        raise BundleError("engine archive", f"not a valid tar: {exc}") from None
    return result


def _hash_member(info: tarfile.TarInfo, src: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := src.read(_COPY):
        h.update(chunk)
    return h.hexdigest()


def image_manifest(data: bytes, where: str) -> tuple[str, list[str], list[str]]:
    """manifest.json of a docker-archive -> (config member, RepoTags, Layers)."""
    entries = load_json(data, lambda _at, problem: BundleError(where, problem), max_bytes=len(data))
    entry = entries[0] if isinstance(entries, list) and len(entries) == 1 else None
    if not isinstance(entry, dict):
        raise BundleError(where, "manifest.json does not describe one image")
    config, layers = entry.get("Config"), entry.get("Layers")
    tags = entry.get("RepoTags") or []
    if (
        not isinstance(config, str)
        or not isinstance(layers, list)
        or not isinstance(tags, list)
        or not all(isinstance(x, str) for x in [*layers, *tags])
    ):
        raise BundleError(where, "manifest.json does not describe one image")
    return _name(config), [_name(x) for x in layers], list(tags)


def manifest_json(config: str, tags: list[str], layers: list[str]) -> bytes:
    return json.dumps([{"Config": config, "RepoTags": tags, "Layers": layers}]).encode()


def image_config(data: bytes, where: str) -> dict[str, Any]:
    fail = lambda _at, problem: BundleError(where, f"image config: {problem}")  # noqa: E731
    doc = load_json(data, fail, max_bytes=len(data))
    if not isinstance(doc, dict):
        raise BundleError(where, "image config is not a JSON object")
    return doc


def open_output(path: os.PathLike[str] | str) -> BinaryIO:
    return open(path, "w+b", buffering=1 << 20)  # the caller closes it
