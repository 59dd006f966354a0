"""The .sbx header member (sandbox-bundle.json): typed, parsed strictly, dumped padded; pure."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sandbox.errors import BundleError, ManifestError
from sandbox.host.documents import load_json
from sandbox.policy.manifest import Manifest, dump_manifest, parse_manifest
from sandbox.policy.schema import FieldPath, Reader, is_int, root

HEADER_NAME: Final = "sandbox-bundle.json"
FORMAT_NAME: Final = "org.sandbox-apps.bundle"
FORMAT_VERSION: Final = 1
EXTENSION: Final = ".sbx"
MIME_TYPE: Final = "application/vnd.sandbox.bundle"
MAX_HEADER_BYTES: Final = 256 * 1024
MAX_LAYERS: Final = 256  # docker itself refuses more than 125 layers in one image
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TAG = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,254}")
# Room left after the JSON for the layer sizes, which are known only after the image streamed
# through; the header is rewritten in place with the same length (JSON allows trailing spaces).
_SIZE_SLACK_PER_LAYER: Final = 24


class BundleKind(enum.StrEnum):
    FULL = "full"  # every layer of the image
    THIN = "thin"  # the layers above a base image, plus that base's reference
    DELTA = "delta"  # the layers an older version of the app lacks, plus that version's reference

    @property
    def partial(self) -> bool:
        return self is not BundleKind.FULL


@dataclass(frozen=True)
class BaseRef:
    """The local image a partial bundle leaves layers to: found again by diff_ids, not name."""

    name: str | None  # the name it had at export (a hint for the user)
    image_id: str  # sha256:<hex> of its config
    diff_ids: tuple[str, ...]  # its layers, bottom first

    def omits(self, diff_id: str) -> bool:
        return diff_id in self.diff_ids


@dataclass(frozen=True)
class LayerRecord:
    diff_id: str  # sha256:<hex> of the uncompressed layer tar
    size: int  # bytes of that tar


@dataclass(frozen=True)
class BundleHeader:
    manifest: Manifest
    image_id: str  # sha256:<hex> of the image config
    layers: tuple[LayerRecord, ...]
    tags: tuple[str, ...] = ()
    kind: BundleKind = BundleKind.FULL
    format_version: int = FORMAT_VERSION
    base: BaseRef | None = None  # set exactly when kind is partial

    @property
    def image_size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def carried(self) -> tuple[LayerRecord, ...]:
        """The layers whose tars the file holds (a partial bundle leaves the base's out)."""
        if self.base is None:
            return self.layers
        return tuple(r for r in self.layers if not self.base.omits(r.diff_id))

    @property
    def omitted(self) -> tuple[LayerRecord, ...]:
        if self.base is None:
            return ()
        return tuple(r for r in self.layers if self.base.omits(r.diff_id))


def _fail(where: str, problem: str) -> BundleError:
    return BundleError(HEADER_NAME, f"{where}: {problem}" if where else problem)


_READ = Reader(fail=_fail, not_table=lambda _value: "must be an object", sort_known=False)


def _base(raw: object, kind: BundleKind, layers: list[LayerRecord]) -> BaseRef:
    where = root("base")
    table = _READ.table(raw, where)
    _READ.keys(table, where, ("name", "id", "diff-ids"))
    name = table["name"]
    if name is not None and (not isinstance(name, str) or not _TAG.fullmatch(name)):
        raise _fail("base.name", f"not an image name: {name!r}")
    diff_ids = table["diff-ids"]
    if not isinstance(diff_ids, list) or not 1 <= len(diff_ids) <= MAX_LAYERS:
        raise _fail("base.diff-ids", f"must be a list of 1 to {MAX_LAYERS} layer digests")
    ref = BaseRef(
        name,
        _digest(table["id"], "base.id"),
        tuple(_digest(d, f"base.diff-ids[{i}]") for i, d in enumerate(diff_ids)),
    )
    _check_base_layers(ref, kind, [r.diff_id for r in layers])
    return ref


def _check_base_layers(ref: BaseRef, kind: BundleKind, ours: list[str]) -> None:
    if kind is BundleKind.THIN and (
        len(ref.diff_ids) >= len(ours) or tuple(ours[: len(ref.diff_ids)]) != ref.diff_ids
    ):
        raise _fail("base.diff-ids", "a thin bundle's base must be a proper prefix of image.layers")
    if kind is BundleKind.DELTA and not any(ref.omits(d) for d in ours):
        raise _fail("base.diff-ids", "a delta shares no layer with the version it applies to")


def _digest(value: object, where: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise _fail(where, f"must be sha256:<64 hex digits>, not {value!r}")
    return value


def _document(data: bytes) -> Mapping[str, Any]:
    doc = load_json(data, _fail, max_bytes=MAX_HEADER_BYTES)
    if not isinstance(doc, dict):
        raise _fail("", "must hold a JSON object")
    _READ.keys(doc, root(), ("format", "format-version", "kind", "manifest", "image"), ("base",))
    return doc


def _kind(doc: Mapping[str, Any]) -> BundleKind:
    """The format and version this reads, and the bundle's kind (which decides `base`)."""
    if doc["format"] != FORMAT_NAME:
        raise _fail("format", f"must be {FORMAT_NAME!r}, not {doc['format']!r}")
    version = doc["format-version"]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise _fail("format-version", f"unsupported version {version!r} (this reads 1)")
    known = ", ".join(repr(k.value) for k in BundleKind)
    kind = _READ.choice(
        doc["kind"], "kind", BundleKind, lambda v: f"must be one of {known}, not {v!r}"
    )
    if kind.partial != ("base" in doc):
        need = "required" if kind.partial else "not allowed"
        raise _fail("base", f"is {need} when kind is {kind.value!r}")
    return kind


def _manifest(raw: object) -> Manifest:
    table = _READ.table(raw, "manifest")
    try:
        return parse_manifest(table)
    except ManifestError as exc:
        raise _fail(f"manifest.{exc.field}" if exc.field else "manifest", exc.problem) from None


def _tags(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > 16:
        raise _fail("image.tags", "must be a list of at most 16 image names")
    for i, tag in enumerate(raw):
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise _fail(f"image.tags[{i}]", f"not an image name: {tag!r}")
    return tuple(raw)


def _layers(raw: object) -> list[LayerRecord]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LAYERS:
        raise _fail("image.layers", f"must be a list of 1 to {MAX_LAYERS} layers")
    return [_layer(item, root("image", "layers").index(i)) for i, item in enumerate(raw)]


def _layer(raw: object, where: FieldPath) -> LayerRecord:
    table = _READ.table(raw, where)
    _READ.keys(table, where, ("diff-id", "size"))
    size = table["size"]
    if not is_int(size) or size < 0:
        raise _READ.error(where.key("size"), f"must be a byte count, not {size!r}")
    return LayerRecord(_digest(table["diff-id"], _READ.render(where.key("diff-id"))), size)


def parse_header(data: bytes) -> BundleHeader:
    """The bytes of sandbox-bundle.json -> BundleHeader; every problem names the field."""
    doc = _document(data)
    kind = _kind(doc)
    manifest = _manifest(doc["manifest"])
    image = _READ.table(doc["image"], "image")
    _READ.keys(image, root("image"), ("id", "tags", "layers"))
    tags = _tags(image["tags"])
    layers = _layers(image["layers"])
    base = _base(doc["base"], kind, layers) if kind.partial else None
    return BundleHeader(
        manifest=manifest,
        image_id=_digest(image["id"], "image.id"),
        layers=tuple(layers),
        tags=tags,
        kind=kind,
        format_version=FORMAT_VERSION,
        base=base,
    )


def _doc(header: BundleHeader) -> dict[str, Any]:
    doc = {
        "format": FORMAT_NAME,
        "format-version": header.format_version,
        "kind": header.kind.value,
        "manifest": dump_manifest(header.manifest),
        "image": {
            "id": header.image_id,
            "tags": list(header.tags),
            "layers": [{"diff-id": r.diff_id, "size": r.size} for r in header.layers],
        },
    }
    if header.base is not None:
        doc["base"] = {
            "name": header.base.name,
            "id": header.base.image_id,
            "diff-ids": list(header.base.diff_ids),
        }
    return doc


def dump_header(header: BundleHeader, length: int | None = None) -> bytes:
    """The header's bytes; with `length`, padded with spaces to exactly that many bytes.

    Without `length` the result carries slack for the real layer sizes, so a header written
    with placeholder sizes can be rewritten in place once the layers have streamed through.
    """
    text = json.dumps(_doc(header), indent=1, sort_keys=True, ensure_ascii=True).encode() + b"\n"
    if length is None:
        length = len(text) + _SIZE_SLACK_PER_LAYER * len(header.layers) + 64
    if len(text) > length:
        raise _fail("", f"needs {len(text)} bytes, more than the {length} reserved")
    return text + b" " * (length - len(text))
