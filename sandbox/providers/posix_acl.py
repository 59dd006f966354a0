"""POSIX access ACLs as the kernel stores them in system.posix_acl_access; pure, no file I/O."""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from sandbox.errors import ProviderError

XATTR_NAME = "system.posix_acl_access"
_VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_UNDEFINED_ID = 0xFFFFFFFF

READ, WRITE, EXECUTE = 4, 2, 1


class Tag(enum.IntEnum):
    """ACL entry tags (linux/posix_acl.h); the kernel wants entries sorted by tag, then id."""

    USER_OBJ = 0x01
    USER = 0x02
    GROUP_OBJ = 0x04
    GROUP = 0x08
    MASK = 0x10
    OTHER = 0x20


@dataclass(frozen=True, order=True)
class AclEntry:
    tag: Tag
    id: int  # uid/gid for USER/GROUP entries; ignored (stored as -1) for the others
    perm: int  # rwx bits, 0..7


_NAMED = (Tag.USER, Tag.GROUP)
_GROUP_CLASS = (Tag.GROUP_OBJ, Tag.USER, Tag.GROUP)


def from_mode(mode: int) -> tuple[AclEntry, ...]:
    """The minimal ACL that a file with no ACL xattr has."""
    return (
        AclEntry(Tag.USER_OBJ, _UNDEFINED_ID, (mode >> 6) & 7),
        AclEntry(Tag.GROUP_OBJ, _UNDEFINED_ID, (mode >> 3) & 7),
        AclEntry(Tag.OTHER, _UNDEFINED_ID, mode & 7),
    )


def decode(blob: bytes) -> tuple[AclEntry, ...]:
    if len(blob) < _HEADER.size or (len(blob) - _HEADER.size) % _ENTRY.size:
        raise ProviderError(f"posix acl: {len(blob)} bytes is not a header plus whole entries")
    (version,) = _HEADER.unpack_from(blob)
    if version != _VERSION:
        raise ProviderError(f"posix acl: version {version}, expected {_VERSION}")
    entries = []
    for offset in range(_HEADER.size, len(blob), _ENTRY.size):
        tag, perm, ident = _ENTRY.unpack_from(blob, offset)
        try:
            entries.append(AclEntry(Tag(tag), ident, perm))
        except ValueError as exc:
            raise ProviderError(f"posix acl: unknown tag {tag:#x} at byte offset {offset}") from exc
    return tuple(entries)


def encode(entries: Iterable[AclEntry]) -> bytes:
    ordered = sorted(entries)
    return _HEADER.pack(_VERSION) + b"".join(
        _ENTRY.pack(e.tag, e.perm, e.id if e.tag in _NAMED else _UNDEFINED_ID) for e in ordered
    )


def _with_mask(entries: list[AclEntry]) -> tuple[AclEntry, ...]:
    """Recompute the mask as setfacl does: the union of the group class, or none if unneeded."""
    body = [e for e in entries if e.tag != Tag.MASK]
    if not any(e.tag in _NAMED for e in body):
        return tuple(sorted(body))
    mask = 0
    for e in body:
        if e.tag in _GROUP_CLASS:
            mask |= e.perm
    return tuple(sorted([*body, AclEntry(Tag.MASK, _UNDEFINED_ID, mask)]))


def grant_user(entries: Iterable[AclEntry], uid: int, perm: int) -> tuple[AclEntry, ...]:
    """Add (or replace) a named-user entry without changing anyone else's effective rights.

    The new mask is the union of the group class, which may be wider than an existing mask;
    so every group-class entry is first clamped to what the old mask let it have.
    """
    entries = list(entries)
    mask = next((e.perm for e in entries if e.tag == Tag.MASK), 7)
    rest = [
        AclEntry(e.tag, e.id, e.perm & mask) if e.tag in _GROUP_CLASS else e
        for e in entries
        if not (e.tag == Tag.USER and e.id == uid)
    ]
    return _with_mask([*rest, AclEntry(Tag.USER, uid, perm)])


def revoke_user(entries: Iterable[AclEntry], uid: int) -> tuple[AclEntry, ...]:
    return _with_mask([e for e in entries if not (e.tag == Tag.USER and e.id == uid)])


def user_perm(entries: Iterable[AclEntry], uid: int) -> int | None:
    for e in entries:
        if e.tag == Tag.USER and e.id == uid:
            return e.perm
    return None
