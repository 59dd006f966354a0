"""Publisher signatures of bundles: Ed25519 keys, the signed statement, key rotation; no engine.

A publisher signs a *statement* about the image, not the file: the app id, the version, the
sha256 of the manifest's canonical JSON, the image id (the config's sha256) and every layer's
diff_id. The verifier rebuilds the statement from the header that the streaming pass checked
against the archive (bundle_image) and compares it field by field before it checks the
signature, so the signature speaks for exactly the bytes the engine will get. The same
statement signs a full, thin or delta file of one image. A rotation is a statement "key A hands
app X to key B", signed by A; a file carries the chain from an older key to the one it is
signed by. The format is in docs/bundle.md ("Signatures").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sandbox.distribution.bundle_format import BundleHeader
from sandbox.errors import BundleError
from sandbox.policy.manifest import canonical_json

SIGNATURE_NAME: Final = "sandbox-signature.json"  # the member right after the header
SIGNATURE_FORMAT: Final = "org.sandbox-apps.signature"
SIGNATURE_VERSION: Final = 1
MAX_ROTATIONS: Final = 16
MAX_KEY_FILE_BYTES: Final = 64 * 1024
FINGERPRINT_PREFIX: Final = "ed25519:"
# Domain separation: a statement's signature can never be taken for a rotation's, or the reverse.
_STATEMENT_DOMAIN: Final = b"org.sandbox-apps.statement.v1\n"
_ROTATION_DOMAIN: Final = b"org.sandbox-apps.key-rotation.v1\n"
_STATEMENT_KEYS: Final = ("app-id", "version", "manifest-sha256", "image-id", "diff-ids")


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def fingerprint(public_raw: bytes) -> str:
    """`ed25519:` + hex sha256 of the 32 raw public key bytes (what the review and pins show)."""
    return FINGERPRINT_PREFIX + hashlib.sha256(public_raw).hexdigest()


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Statement:
    """What a publisher vouches for: this app, this version, this manifest, these bytes."""

    app_id: str
    version: str
    manifest_sha256: str  # hex sha256 of the manifest's canonical JSON
    image_id: str  # sha256:<hex> of the image config
    diff_ids: tuple[str, ...]  # every layer, bottom first (also those a partial file omits)

    def encode(self) -> bytes:
        """The signed bytes: canonical JSON, one line, sorted keys."""
        return _canonical(
            {
                "app-id": self.app_id,
                "version": self.version,
                "manifest-sha256": self.manifest_sha256,
                "image-id": self.image_id,
                "diff-ids": list(self.diff_ids),
            }
        )


def statement_for(header: BundleHeader) -> Statement:
    """The statement a verified header makes true (every field re-derived from it)."""
    app = header.manifest.app
    return Statement(
        app_id=app.id,
        version=app.version,
        manifest_sha256=hashlib.sha256(canonical_json(header.manifest).encode()).hexdigest(),
        image_id=header.image_id,
        diff_ids=tuple(r.diff_id for r in header.layers),
    )


@dataclass(frozen=True)
class Rotation:
    """Key `old` hands app `app_id` over to key `new`; signed by `old`."""

    app_id: str
    old: bytes  # raw public keys, 32 bytes each
    new: bytes
    signature: bytes

    def message(self) -> bytes:
        doc = {"app-id": self.app_id, "from": fingerprint(self.old), "to": fingerprint(self.new)}
        return _ROTATION_DOMAIN + _canonical(doc)


@dataclass(frozen=True)
class Signature:
    """The signature member: the statement, the signing key, its signature, the rotations."""

    statement: Statement
    key: bytes  # raw Ed25519 public key of the signer
    signature: bytes
    rotations: tuple[Rotation, ...] = ()  # oldest first; the last one's `new` is `key`


@dataclass(frozen=True)
class Publisher:
    """Who signed a verified bundle: the key and the keys it rotated from, oldest first."""

    fingerprint: str
    lineage: tuple[str, ...]  # ends with `fingerprint`; longer when the file carries rotations


@dataclass(frozen=True)
class SigningKeys:
    """What `sandbox export --sign` signs with: the key, and older keys it rotates from."""

    key: Ed25519PrivateKey
    rotate_from: tuple[Ed25519PrivateKey, ...] = ()  # oldest first

    @classmethod
    def load(cls, key: Path, rotate_from: Sequence[Path] = ()) -> SigningKeys:
        return cls(load_key(key), tuple(load_key(p) for p in rotate_from))

    @property
    def fingerprint(self) -> str:
        return fingerprint(_raw_public(self.key))


# ---- keys ----------------------------------------------------------------------------------


def generate_key(path: Path) -> str:
    """Write a new Ed25519 private key (PEM, PKCS#8) at `path`, mode 0600, never over an
    existing file; returns the public fingerprint."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise BundleError(str(path), "exists already; a key is never overwritten") from None
    except OSError as exc:
        raise BundleError(str(path), f"cannot create: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # whatever the umask said
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return fingerprint(_raw_public(key))


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise BundleError(str(path), f"cannot open the key file: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(str(path), "the key file is not a regular file")
        if st.st_mode & 0o077:
            raise BundleError(
                str(path),
                f"the key file is open to others (mode {stat.S_IMODE(st.st_mode):04o}); "
                "chmod 600 it",
            )
        data = f.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise BundleError(str(path), f"larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
    return data


def load_key(path: Path) -> Ed25519PrivateKey:
    """The publisher key in `path` (as `generate_key` writes it); BundleError names the file."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BundleError(
            str(path), f"not an unencrypted PEM private key: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(str(path), f"holds a {type(key).__name__}, not an Ed25519 key")
    return key


# ---- signing -------------------------------------------------------------------------------


def rotate(app_id: str, old: Ed25519PrivateKey, new: Ed25519PrivateKey) -> Rotation:
    unsigned = Rotation(app_id, _raw_public(old), _raw_public(new), b"")
    return Rotation(app_id, unsigned.old, unsigned.new, old.sign(unsigned.message()))


def sign(
    statement: Statement, key: Ed25519PrivateKey, rotate_from: Sequence[Ed25519PrivateKey] = ()
) -> Signature:
    """Sign `statement`; `rotate_from` (oldest first) chains each older key to the next and the
    last to `key`, so hosts that pinned any of them accept the file."""
    chain = [*rotate_from, key]
    rotations = tuple(rotate(statement.app_id, a, b) for a, b in itertools.pairwise(chain))
    return Signature(
        statement, _raw_public(key), key.sign(_STATEMENT_DOMAIN + statement.encode()), rotations
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dump_signature(sig: Signature) -> bytes:
    """The bytes of the signature member (JSON, sorted keys)."""
    doc = {
        "format": SIGNATURE_FORMAT,
        "format-version": SIGNATURE_VERSION,
        "statement": json.loads(sig.statement.encode()),
        "key": _b64(sig.key),
        "signature": _b64(sig.signature),
        "rotations": [
            {"from": _b64(r.old), "to": _b64(r.new), "signature": _b64(r.signature)}
            for r in sig.rotations
        ],
    }
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True).encode() + b"\n"


# ---- parsing and verifying -----------------------------------------------------------------


def _fail(field: str, problem: str) -> BundleError:
    return BundleError(SIGNATURE_NAME, f"{field}: {problem}" if field else problem)


def _table(raw: object, field: str, keys: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(field, "must be an object")
    extra = sorted(set(raw) - set(keys))
    lacking = [k for k in keys if k not in raw]
    if extra or lacking:
        what = f"unknown key {extra[0]!r}" if extra else f"lacks {lacking[0]!r}"
        raise _fail(field, what)
    return raw


def _text(raw: object, field: str, limit: int = 256) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= limit:
        raise _fail(field, f"must be a string of 1 to {limit} characters")
    return raw


def _bytes(raw: object, field: str, size: int) -> bytes:
    text = _text(raw, field, 128)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(field, "not base64") from None
    if len(data) != size:
        raise _fail(field, f"must be {size} bytes, not {len(data)}")
    return data


def _statement(raw: object) -> Statement:
    table = _table(raw, "statement", _STATEMENT_KEYS)
    diff_ids = table["diff-ids"]
    if not isinstance(diff_ids, list) or not 1 <= len(diff_ids) <= 256:
        raise _fail("statement.diff-ids", "must be a list of 1 to 256 layer digests")
    return Statement(
        app_id=_text(table["app-id"], "statement.app-id"),
        version=_text(table["version"], "statement.version"),
        manifest_sha256=_text(table["manifest-sha256"], "statement.manifest-sha256", 64),
        image_id=_text(table["image-id"], "statement.image-id", 71),
        diff_ids=tuple(_text(d, f"statement.diff-ids[{i}]", 71) for i, d in enumerate(diff_ids)),
    )


def _rotation(raw: object, i: int, app_id: str) -> Rotation:
    where = f"rotations[{i}]"
    table = _table(raw, where, ("from", "to", "signature"))
    return Rotation(
        app_id,
        _bytes(table["from"], f"{where}.from", 32),
        _bytes(table["to"], f"{where}.to", 32),
        _bytes(table["signature"], f"{where}.signature", 64),
    )


def parse_signature(data: bytes) -> Signature:
    """The signature member's bytes -> Signature; every problem names the field."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _fail("", f"not UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise _fail("", f"invalid JSON at offset {exc.pos}: {exc.msg}") from None
    except RecursionError:
        raise _fail("", "nested too deeply") from None
    keys = ("format", "format-version", "statement", "key", "signature", "rotations")
    table = _table(doc, "", keys)
    if table["format"] != SIGNATURE_FORMAT:
        raise _fail("format", f"must be {SIGNATURE_FORMAT!r}")
    if table["format-version"] != SIGNATURE_VERSION or isinstance(table["format-version"], bool):
        raise _fail("format-version", f"unsupported version (this reads {SIGNATURE_VERSION})")
    statement = _statement(table["statement"])
    rotations = table["rotations"]
    if not isinstance(rotations, list) or len(rotations) > MAX_ROTATIONS:
        raise _fail("rotations", f"must be a list of at most {MAX_ROTATIONS} rotations")
    return Signature(
        statement,
        _bytes(table["key"], "key", 32),
        _bytes(table["signature"], "signature", 64),
        tuple(_rotation(r, i, statement.app_id) for i, r in enumerate(rotations)),
    )


def _verify(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _compare(signed: Statement, actual: Statement) -> None:
    """Field by field: the first one the file's content contradicts is named."""
    for key, a, b in (
        ("app-id", signed.app_id, actual.app_id),
        ("version", signed.version, actual.version),
        ("manifest-sha256", signed.manifest_sha256, actual.manifest_sha256),
        ("image-id", signed.image_id, actual.image_id),
        ("diff-ids", signed.diff_ids, actual.diff_ids),
    ):
        if a != b:
            raise _fail(f"statement.{key}", f"signed {a!r}, the file holds {b!r}")


def _lineage(sig: Signature) -> tuple[str, ...]:
    """The rotation chain, checked link by link, as fingerprints oldest first."""
    chain = [r.old for r in sig.rotations] + [sig.key]
    for i, rot in enumerate(sig.rotations):
        if rot.new != chain[i + 1]:
            raise _fail(f"rotations[{i}].to", "does not hand over to the next key of the chain")
        if not _verify(rot.old, rot.signature, rot.message()):
            raise _fail(f"rotations[{i}].signature", "is not the old key's signature")
    lineage = tuple(fingerprint(k) for k in chain)
    if len(set(lineage)) != len(lineage):
        raise _fail("rotations", "a key appears twice in the chain")
    return lineage


def verify_signature(header: BundleHeader, data: bytes) -> Publisher:
    """Check the signature member `data` against the verified `header`: the statement must be
    what the file holds, signed by `key`, with an unbroken rotation chain. BundleError else."""
    sig = parse_signature(data)
    _compare(sig.statement, statement_for(header))
    if not _verify(sig.key, sig.signature, _STATEMENT_DOMAIN + sig.statement.encode()):
        raise _fail("signature", f"is not {fingerprint(sig.key)}'s signature of the statement")
    lineage = _lineage(sig)
    return Publisher(lineage[-1], lineage)
