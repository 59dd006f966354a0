"""The Xauthority file format (libXau): encode and decode entries; pure, no file or socket I/O."""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from sandbox.errors import ProviderError

MIT_MAGIC_COOKIE = "MIT-MAGIC-COOKIE-1"


class Family(enum.IntEnum):
    """Address families as libXau stores them (X.h and Xauth.h)."""

    INTERNET = 0
    DECNET = 1
    CHAOS = 2
    INTERNET6 = 6
    SERVER_INTERPRETED = 5
    LOCAL = 256  # address = the client's hostname
    WILD = 0xFFFF  # any address; libXau honours it, python-xlib does not


@dataclass(frozen=True)
class XauthEntry:
    """One Xauthority record; `number` is the display number as text ("99"), as libXau stores it."""

    family: int
    address: bytes
    number: str
    name: str
    data: bytes

    def matches_display(self, number: int) -> bool:
        # An empty number is a wildcard for every display in libXau's matching rules.
        return self.number in ("", str(number))


def _field(value: bytes, what: str) -> bytes:
    if len(value) > 0xFFFF:
        raise ProviderError(f"xauth: {what} is {len(value)} bytes, more than 65535")
    return struct.pack(">H", len(value)) + value


def encode_entry(entry: XauthEntry) -> bytes:
    """One record: big-endian family, then four 16-bit-length-prefixed fields."""
    if not 0 <= entry.family <= 0xFFFF:
        raise ProviderError(f"xauth: family {entry.family} is out of range 0..65535")
    return (
        struct.pack(">H", entry.family)
        + _field(entry.address, "address")
        + _field(entry.number.encode("ascii"), "display number")
        + _field(entry.name.encode("ascii"), "auth name")
        + _field(entry.data, "auth data")
    )


def encode(entries: Iterable[XauthEntry]) -> bytes:
    return b"".join(encode_entry(e) for e in entries)


def decode(blob: bytes) -> tuple[XauthEntry, ...]:
    """Every record of a file's bytes; a truncated record is an error naming its byte offset."""
    entries: list[XauthEntry] = []
    offset = 0
    while offset < len(blob):
        start = offset
        if offset + 2 > len(blob):
            raise ProviderError(f"xauth: truncated family at byte offset {start}")
        (family,) = struct.unpack_from(">H", blob, offset)
        offset += 2
        fields: list[bytes] = []
        for what in ("address", "display number", "auth name", "auth data"):
            if offset + 2 > len(blob):
                raise ProviderError(f"xauth: truncated {what} length at byte offset {offset}")
            (length,) = struct.unpack_from(">H", blob, offset)
            offset += 2
            if offset + length > len(blob):
                raise ProviderError(
                    f"xauth: {what} at byte offset {offset} wants {length} bytes, "
                    f"{len(blob) - offset} left"
                )
            fields.append(blob[offset : offset + length])
            offset += length
        address, number, name, data = fields
        try:
            entries.append(
                XauthEntry(family, address, number.decode("ascii"), name.decode("ascii"), data)
            )
        except UnicodeDecodeError as exc:
            raise ProviderError(f"xauth: non-ASCII text in the record at offset {start}") from exc
    return tuple(entries)


def find_cookie(entries: Iterable[XauthEntry], number: int, hostname: bytes) -> XauthEntry | None:
    """The MIT cookie libXau would pick for a local connection to display `number`.

    libXau takes the first record in file order whose family is LOCAL with this host's name
    or WILD, and whose number matches.
    """
    for entry in entries:
        if entry.name != MIT_MAGIC_COOKIE or not entry.matches_display(number):
            continue
        if entry.family == Family.WILD or (
            entry.family == Family.LOCAL and entry.address == hostname
        ):
            return entry
    return None
