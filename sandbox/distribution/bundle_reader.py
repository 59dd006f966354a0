"""Reads a .sbx bundle safely in one streaming pass; never extracts, writes or calls the engine.

Never extracts, never writes, never talks to the engine. See docs/bundle.md for the rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import queue
import re
import tarfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

from sandbox.distribution.bundle_format import (
    HEADER_NAME,
    MAX_HEADER_BYTES,
    BundleHeader,
    parse_header,
)
from sandbox.errors import BundleError, ManifestError
from sandbox.policy.layers import adds_permissions
from sandbox.policy.manifest import manifest_from_labels

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

MANIFEST_JSON: Final = "manifest.json"
_BLOB = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_CONFIG = re.compile(r"([0-9a-f]{64})\.json")
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


@dataclass
class _Member:
    size: int
    sha256: str | None = None  # None for links and dirs
    link: str | None = None  # normalized target inside the archive
    data: bytes | None = None  # kept only for small JSON-looking members
    icon: _LayerScan | None = None


@dataclass
class _LayerScan:
    """What one layer tar does to the icon path: provides it, removes it, or leaves it."""

    icon: bytes | None = None
    present: bool = False  # the layer has the path (regular file or anything else)
    removed: bool = False  # a whiteout or a non-directory ancestor hides lower layers' copy


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


def _norm(name: str, member: str) -> str:
    if not name or name.startswith("/"):
        raise BundleError(member, "absolute or empty member name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BundleError(member, "member name contains '..'")
    if not parts:
        raise BundleError(member, "member name is the archive root")
    return "/".join(parts)


def _inside(target: str, member: str, what: str) -> str:
    if target.startswith("/"):
        raise BundleError(member, f"{what} points to an absolute path {target!r}")
    resolved = posixpath.normpath(target)
    if resolved == ".." or resolved.startswith("../") or resolved in (".", ""):
        raise BundleError(member, f"{what} {target!r} escapes the archive")
    return resolved


_BLOCK = 512
# Regular files (old, ustar, contiguous) have data; links, devices, dirs and fifos have none,
# whatever their size field says (as tarfile reads them); unknown types are skipped by size.
_DATA_TYPES = frozenset({b"0", b"\0", b"7"})
_HEADER_ONLY = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})


class _LayerScanner:
    """Finds the icon path and whiteouts over it in one layer tar as its bytes stream by.

    Reads tar headers only (ustar name and prefix, pax `path`/`size`, GNU long names) and skips
    file data without copying it: parsing every header with tarfile cost ~40% of verifying a
    large base layer. Anything it does not understand ends the scan with no verdict for this
    layer, as an unreadable tar did before (the layer's digest still decides; links are never
    followed).
    """

    def __init__(self, icon_rel: str, max_icon: int) -> None:
        self._icon_rel = icon_rel
        self._ancestors = {icon_rel.rsplit("/", i)[0] for i in range(1, icon_rel.count("/") + 1)}
        self._max_icon = max_icon
        self._buf = bytearray()  # a header or an extended header's data, being gathered
        self._want = _BLOCK  # bytes `_buf` must hold before `_step` runs
        self._skip = 0  # data bytes to pass over before the next header
        self._icon: bytearray | None = None  # the icon's data while it streams by
        self._icon_left = 0
        self._extended: bytes | None = None  # the header a pax/GNU record belongs to
        self._extended_type = b""
        self._extended_size = 0
        self._long_name: str | None = None
        self._pax: dict[str, str] = {}
        self._stopped = False
        self.scan = _LayerScan()

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stopped:
            if self._skip:
                n = min(self._skip, len(view))
                if self._icon is not None and self._icon_left:
                    take = min(n, self._icon_left)
                    self._icon += view[:take]
                    self._icon_left -= take
                    if not self._icon_left:
                        self.scan.icon = bytes(self._icon)
                        self._icon = None
                self._skip -= n
                view = view[n:]
                continue
            take = min(self._want - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == self._want:
                try:
                    self._step()
                except (ValueError, UnicodeDecodeError):
                    self._stopped = True
                    self.scan = _LayerScan()

    def _step(self) -> None:
        if self._extended is not None:  # the data of a pax or GNU long-name record
            data = bytes(self._buf[: self._extended_size])
            if self._extended_type == b"x":
                self._pax.update(_pax_records(data))
            elif self._extended_type == b"L":
                self._long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            self._extended = None
            self._buf.clear()
            self._want = _BLOCK
            return
        block = bytes(self._buf)
        self._buf.clear()
        if block == bytes(_BLOCK):
            self._stopped = True  # end-of-archive marker
            return
        kind = block[156:157]
        size = _tar_number(block[124:136])
        if size < 0:
            raise ValueError("negative size")
        if kind in (b"x", b"L", b"K", b"g"):
            if size > 1024 * 1024:
                raise ValueError("extended header too large")
            if kind in (b"x", b"L"):
                self._extended, self._extended_type, self._extended_size = block, kind, size
                self._want = -(-size // _BLOCK) * _BLOCK or _BLOCK
                if size == 0:
                    self._extended = None
                    self._want = _BLOCK
                return
            self._skip = -(-size // _BLOCK) * _BLOCK  # link names and globals: not needed
            return
        name = block[0:100].split(b"\0", 1)[0]
        if block[257:262] == b"ustar":
            prefix = block[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        text = name.decode("utf-8", "surrogateescape")
        if self._long_name is not None:
            text = self._long_name
        if "path" in self._pax:
            text = self._pax["path"]
        if "size" in self._pax:
            size = int(self._pax["size"])
            if size < 0:
                raise ValueError("negative size")
        self._long_name = None
        self._pax = {}
        self._member(text, kind, size)
        if kind in _DATA_TYPES or kind not in _HEADER_ONLY:
            self._skip = -(-size // _BLOCK) * _BLOCK

    def _member(self, raw: str, kind: bytes, size: int) -> None:
        name = "/".join(p for p in raw.split("/") if p not in ("", "."))
        base = posixpath.basename(name)
        parent = posixpath.dirname(name)
        scan = self.scan
        if name == self._icon_rel:
            scan.present = True
            scan.icon = None
            self._icon = None
            if kind in _DATA_TYPES and size <= self._max_icon:
                self._icon, self._icon_left = bytearray(), size
                if size == 0:
                    scan.icon, self._icon = b"", None
        elif base == ".wh..wh..opq":
            if parent in self._ancestors or parent == "":
                scan.removed = True
        elif base.startswith(".wh."):
            hidden = posixpath.join(parent, base[4:])
            if hidden == self._icon_rel or hidden in self._ancestors:
                scan.removed = True
        elif name in self._ancestors and kind != b"5":
            scan.removed = True

    def result(self) -> _LayerScan:
        if self._icon is not None:  # the layer ended inside the icon's data
            return _LayerScan()
        return self.scan


def _tar_number(field: bytes) -> int:
    """A tar header number: octal text, or base-256 when the top bit is set (GNU)."""
    if field[:1] and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip(b" ")
    return int(text, 8) if text else 0


def _pax_records(data: bytes) -> dict[str, str]:
    """`LEN key=value\\n` records of a pax extended header."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos : pos + 1] not in (b"", b"\0"):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= 0:
            raise ValueError("bad pax record length")
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _resolve(members: dict[str, _Member], name: str, where: str) -> tuple[str, _Member]:
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


def _json(members: dict[str, _Member], name: str, where: str) -> Any:
    _, m = _resolve(members, name, where)
    if m.data is None:
        raise BundleError(name, "is not a small JSON file")
    try:
        return json.loads(m.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(name, f"invalid JSON: {exc}") from None


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
    layers = _check_image(header, members)
    if hasher.pos != total:
        raise BundleError(str(path), "changed size while it was read")
    icon = _top_icon(layers)
    return VerifiedBundle(
        path=path,
        header=header,
        sha256=hasher.hash.hexdigest(),
        size=total,
        icon=icon,
        prefix_digests=tuple(hasher.prefixes),
        check_chunk=limits.check_chunk,
    )


def _walk(
    hasher: _FileHasher, limits: ReadLimits, progress: Progress | None, total: int
) -> tuple[BundleHeader, dict[str, _Member]]:
    members: dict[str, _Member] = {}
    header: BundleHeader | None = None
    icon_rel: str | None = None
    count = 0
    content = 0
    retained = 0
    name = "archive"
    try:
        with tarfile.open(fileobj=hasher, mode="r|", bufsize=_TAR_BUFSIZE) as tar:  # type: ignore[call-overload]
            for info in tar:
                count += 1
                if count > limits.max_members:
                    raise BundleError(info.name, f"more than {limits.max_members} members")
                name = _norm(info.name, info.name)
                if name in members:
                    raise BundleError(info.name, "appears twice in the archive")
                if header is None and name != HEADER_NAME:
                    raise BundleError(info.name, f"the first member must be {HEADER_NAME}")
                content += info.size
                if content > limits.max_total_bytes:
                    raise BundleError(info.name, f"content exceeds {limits.max_total_bytes} bytes")
                if info.isdir():
                    members[name] = _Member(0)
                elif info.issym():
                    target = posixpath.join(posixpath.dirname(name), info.linkname)
                    members[name] = _Member(0, link=_inside(target, info.name, "symlink"))
                elif info.islnk():
                    target = _inside(info.linkname, info.name, "hard link")
                    if target not in members:
                        raise BundleError(
                            info.name, f"hard link to {target!r}, not an earlier member"
                        )
                    members[name] = _Member(0, link=target)
                elif info.isreg():
                    src = tar.extractfile(info)
                    assert src is not None  # a regular member always has a file object
                    first = src.read(_ICON_SNIFF)
                    keep = first[:1] in (b"{", b"[") and info.size <= limits.max_json_bytes
                    scanner = None
                    if icon_rel is not None and not keep and info.size >= 1024:
                        scanner = _LayerScanner(icon_rel, limits.max_icon_bytes)
                    stream = _MemberHasher(src, first, scanner.feed if scanner else None)
                    member = _Member(info.size)
                    if name == HEADER_NAME:
                        if info.size > MAX_HEADER_BYTES:
                            raise BundleError(info.name, f"larger than {MAX_HEADER_BYTES} bytes")
                        data = bytearray()
                        while chunk := stream.read(_READ):
                            data += chunk
                        header = parse_header(bytes(data))
                    elif keep:
                        rest = bytearray()
                        while chunk := stream.read(_READ):
                            rest += chunk
                        member.data = bytes(rest)
                        retained += len(rest)
                        if retained > limits.max_retained_bytes:
                            raise BundleError(info.name, "too much JSON in the archive")
                    stream.drain()
                    if stream.done != info.size:
                        raise BundleError(info.name, "truncated: the file ends inside it")
                    if scanner is not None:
                        member.icon = scanner.result()
                    member.sha256 = stream.hash.hexdigest()
                    blob = _BLOB.fullmatch(name)
                    if blob and blob.group(1) != member.sha256:
                        raise BundleError(info.name, f"content has sha256 {member.sha256}")
                    members[name] = member
                else:
                    raise BundleError(info.name, "is a device, fifo or other special file")
                if header is not None and icon_rel is None and header.manifest.app.icon:
                    icon_rel = header.manifest.app.icon.lstrip("/")
                if progress is not None:
                    progress(hasher.pos, total)
    except tarfile.TarError as exc:
        raise BundleError(name, f"not a valid archive here: {exc}") from None
    except EOFError:
        raise BundleError(name, "truncated: the file ends inside it") from None
    if header is None:
        raise BundleError(HEADER_NAME, "missing: this is not a sandbox bundle")
    return header, members


def _check_image(
    header: BundleHeader, members: dict[str, _Member]
) -> list[tuple[str, _Member] | None]:
    """The docker-archive image against itself and against the header; returns its layers,
    bottom first (None for one a partial bundle leaves out)."""
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
    config_path, config = _resolve(members, _norm(config_name, MANIFEST_JSON), MANIFEST_JSON)
    named = _CONFIG.fullmatch(config_path) or _BLOB.fullmatch(config_path)
    if named is None or named.group(1) != config.sha256:
        raise BundleError(config_path, f"config's name does not match its sha256 {config.sha256}")
    image_id = f"sha256:{config.sha256}"
    if image_id != header.image_id:
        raise BundleError(HEADER_NAME, f"image.id is {header.image_id}, the image is {image_id}")
    doc = _json(members, config_path, MANIFEST_JSON)
    if not isinstance(doc, dict):
        raise BundleError(config_path, "the image config must be a JSON object")
    diff_ids = (doc.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise BundleError(config_path, "rootfs.diff_ids must be a list of digests")
    if len(diff_ids) != len(layer_names):
        raise BundleError(
            MANIFEST_JSON,
            f"lists {len(layer_names)} layers but the config's rootfs has {len(diff_ids)}",
        )
    if len(header.layers) != len(diff_ids):
        raise BundleError(
            HEADER_NAME, f"lists {len(header.layers)} layers, the image has {len(diff_ids)}"
        )
    layers: list[tuple[str, _Member] | None] = []
    for i, (layer_name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True)):
        if header.layers[i].diff_id != diff_id:
            raise BundleError(
                HEADER_NAME,
                f"image.layers[{i}] says {header.layers[i].diff_id}, the config {diff_id}",
            )
        try:
            path, layer = _resolve(members, _norm(layer_name, MANIFEST_JSON), MANIFEST_JSON)
        except BundleError:
            # A partial bundle leaves out exactly the layers its base reference names; the
            # engine or the client's reconstruction takes those from the local base.
            if header.base is not None and header.base.omits(diff_id):
                layers.append(None)
                continue
            raise
        actual = f"sha256:{layer.sha256}"
        if actual != diff_id:
            raise BundleError(path, f"layer {i} has {actual}, the config says {diff_id}")
        record = header.layers[i]
        if record.diff_id != diff_id or record.size != layer.size:
            raise BundleError(
                HEADER_NAME,
                f"image.layers[{i}] says {record.diff_id} of {record.size} bytes, the archive "
                f"has {diff_id} of {layer.size} bytes",
            )
        layers.append((path, layer))
    if sorted(tags) != sorted(header.tags):
        raise BundleError(
            MANIFEST_JSON, f"RepoTags {tags} differ from the header's {list(header.tags)}"
        )
    labels = (doc.get("config") or {}).get("Labels") or {}
    if not isinstance(labels, dict):
        raise BundleError(config_path, "config.Labels must be an object")
    try:
        from_labels = manifest_from_labels({str(k): str(v) for k, v in labels.items()})
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
    return layers


def _top_icon(layers: list[tuple[str, _Member] | None]) -> bytes | None:
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
