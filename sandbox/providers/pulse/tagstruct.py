"""Sans-IO codec of PulseAudio tagstruct values; no frames, no connection state, no policy."""

# A tagstruct is parsed completely or not at all: every tag known, every length in bounds,
# strings valid UTF-8 ended by one NUL, proplist keys printable ASCII, no trailing bytes.
# `serialize_tagstruct(parse_tagstruct(b)) == b` for every `b` that parses. Every violation
# raises ProviderError. One reader per tag byte and one writer per value type, looked up in a
# table: one dict lookup per value, where a chain of tests cost up to fifteen comparisons.

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.errors import ProviderError

MAX_CHANNELS = 32
VOLUME_MAX = 0x7FFFFFFF
PROPLIST_VALUE_MAX = 64 * 1024
PROPLIST_KEY_MAX = 255

# Values: one frozen type per tag, so a round trip keeps every tag exactly.


@dataclass(frozen=True, slots=True)
class U32:
    value: int


@dataclass(frozen=True, slots=True)
class U8:
    value: int


@dataclass(frozen=True, slots=True)
class U64:
    value: int


@dataclass(frozen=True, slots=True)
class S64:
    value: int


@dataclass(frozen=True, slots=True)
class Usec:
    value: int


@dataclass(frozen=True, slots=True)
class Volume:
    value: int


@dataclass(frozen=True, slots=True)
class Timeval:
    seconds: int
    microseconds: int


@dataclass(frozen=True, slots=True)
class Str:
    """`t` string, or `N` (the null string) when value is None."""

    value: str | None


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool


@dataclass(frozen=True, slots=True)
class SampleSpec:
    format: int
    channels: int
    rate: int


@dataclass(frozen=True, slots=True)
class ChannelMap:
    positions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CVolume:
    volumes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Arbitrary:
    data: bytes


@dataclass(frozen=True, slots=True)
class Proplist:
    """Ordered (key, raw value) pairs; string values carry their trailing NUL, as on the wire."""

    items: tuple[tuple[str, bytes], ...] = ()

    def get_str(self, key: str) -> str | None:
        for k, v in self.items:
            if k == key:
                if v.endswith(b"\0"):
                    return v[:-1].decode("utf-8", "replace")
                return None
        return None


@dataclass(frozen=True, slots=True)
class FormatInfo:
    encoding: int
    props: Proplist


Value = (
    U32
    | U8
    | U64
    | S64
    | Usec
    | Volume
    | Timeval
    | Str
    | Bool
    | SampleSpec
    | ChannelMap
    | CVolume
    | Arbitrary
    | Proplist
    | FormatInfo
)

_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_S64 = struct.Struct("!q")
_SPEC = struct.Struct("!BBI")
_TV = struct.Struct("!II")


def prop_str(value: str) -> bytes:
    """A proplist string value as libpulse stores it: UTF-8 with exactly one trailing NUL."""
    return value.encode("utf-8") + b"\0"


# ---------------------------------------------------------------------------------------------
# Reading


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = bytes(data)
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise ProviderError(f"pulse: tagstruct truncated at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def tag(self) -> str:
        return chr(self.take(1)[0])

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProviderError(f"pulse: unterminated string at offset {self.pos}")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProviderError(f"pulse: string at offset {self.pos} is not UTF-8") from exc

    def expect(self, tag: str) -> None:
        got = self.tag()
        if got != tag:
            raise ProviderError(f"pulse: expected tag {tag!r}, got {got!r} at {self.pos - 1}")


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= PROPLIST_KEY_MAX and all(0x20 < ord(c) < 0x7F for c in key)


def _read_proplist(r: _Reader) -> Proplist:
    items: list[tuple[str, bytes]] = []
    while True:
        tag = r.tag()
        if tag == "N":
            return Proplist(tuple(items))
        if tag != "t":
            raise ProviderError(f"pulse: proplist key expected at offset {r.pos - 1}")
        key = r.cstring()
        if not _valid_key(key):
            raise ProviderError(f"pulse: invalid proplist key {key[:64]!r}")
        r.expect("L")
        n = r.u32()
        if n > PROPLIST_VALUE_MAX:
            raise ProviderError(f"pulse: proplist value of {key!r} too large ({n} bytes)")
        r.expect("x")
        if r.u32() != n:
            raise ProviderError(f"pulse: proplist value length mismatch for {key!r}")
        items.append((key, r.take(n)))


def _read_timeval(r: _Reader) -> Timeval:
    sec, usec = _TV.unpack(r.take(8))
    return Timeval(sec, usec)


def _read_sample_spec(r: _Reader) -> SampleSpec:
    fmt, channels, rate = _SPEC.unpack(r.take(6))
    return SampleSpec(fmt, channels, rate)


def _read_channel_map(r: _Reader) -> ChannelMap:
    n = r.take(1)[0]
    if n > MAX_CHANNELS:
        raise ProviderError(f"pulse: channel map of {n} channels")
    return ChannelMap(tuple(r.take(n)))


def _read_cvolume(r: _Reader) -> CVolume:
    n = r.take(1)[0]
    if n > MAX_CHANNELS:
        raise ProviderError(f"pulse: cvolume of {n} channels")
    vols = struct.unpack(f"!{n}I", r.take(4 * n))
    if any(v > VOLUME_MAX for v in vols):
        raise ProviderError("pulse: volume out of range")
    return CVolume(tuple(vols))


def _read_format_info(r: _Reader) -> FormatInfo:
    r.expect("B")
    encoding = r.take(1)[0]
    r.expect("P")
    return FormatInfo(encoding, _read_proplist(r))


_NULL_STR = Str(None)
_TRUE = Bool(True)
_FALSE = Bool(False)

# The tag byte (after the caller read it) -> the reader of the value that follows.
_READERS: dict[str, Callable[[_Reader], Value]] = {
    "L": lambda r: U32(r.u32()),
    "t": lambda r: Str(r.cstring()),
    "N": lambda r: _NULL_STR,
    "1": lambda r: _TRUE,
    "0": lambda r: _FALSE,
    "B": lambda r: U8(r.take(1)[0]),
    "R": lambda r: U64(_U64.unpack(r.take(8))[0]),
    "r": lambda r: S64(_S64.unpack(r.take(8))[0]),
    "U": lambda r: Usec(_U64.unpack(r.take(8))[0]),
    "V": lambda r: Volume(r.u32()),
    "T": _read_timeval,
    "a": _read_sample_spec,
    "m": _read_channel_map,
    "v": _read_cvolume,
    "x": lambda r: Arbitrary(r.take(r.u32())),
    "P": _read_proplist,
    "f": _read_format_info,
}


def parse_tagstruct(data: bytes | memoryview) -> tuple[Value, ...]:
    """Every value of a tagstruct, or ProviderError; never a partial result."""
    r = _Reader(data)
    values: list[Value] = []
    readers = _READERS
    while r.pos < len(r.data):
        tag = r.tag()
        reader = readers.get(tag)
        if reader is None:
            raise ProviderError(f"pulse: unknown tag byte {ord(tag):#04x} at offset {r.pos - 1}")
        values.append(reader(r))
    return tuple(values)


# ---------------------------------------------------------------------------------------------
# Writing


def _proplist_items(p: Proplist) -> bytes:
    out = bytearray()
    for key, value in p.items:
        out += b"t" + key.encode("ascii") + b"\0"
        out += b"L" + _U32.pack(len(value)) + b"x" + _U32.pack(len(value)) + value
    out += b"N"
    return bytes(out)


def _str_bytes(v: Str) -> bytes:
    if v.value is None:
        return b"N"
    return b"t" + v.value.encode("utf-8") + b"\0"


def _cvolume_bytes(v: CVolume) -> bytes:
    n = len(v.volumes)
    return b"v" + bytes((n,)) + struct.pack(f"!{n}I", *v.volumes)


# The value's exact type -> its wire bytes, tag first. Any: each writer takes the value of its
# own key, a pairing a dict type cannot state.
_WRITERS: dict[type, Callable[[Any], bytes]] = {
    U32: lambda v: b"L" + _U32.pack(v.value),
    Str: _str_bytes,
    Bool: lambda v: b"1" if v.value else b"0",
    U8: lambda v: b"B" + bytes((v.value,)),
    U64: lambda v: b"R" + _U64.pack(v.value),
    S64: lambda v: b"r" + _S64.pack(v.value),
    Usec: lambda v: b"U" + _U64.pack(v.value),
    Volume: lambda v: b"V" + _U32.pack(v.value),
    Timeval: lambda v: b"T" + _TV.pack(v.seconds, v.microseconds),
    SampleSpec: lambda v: b"a" + _SPEC.pack(v.format, v.channels, v.rate),
    ChannelMap: lambda v: b"m" + bytes((len(v.positions), *v.positions)),
    CVolume: _cvolume_bytes,
    Arbitrary: lambda v: b"x" + _U32.pack(len(v.data)) + v.data,
    Proplist: lambda v: b"P" + _proplist_items(v),
    FormatInfo: lambda v: b"fB" + bytes((v.encoding,)) + b"P" + _proplist_items(v.props),
}


def serialize_tagstruct(values: Iterable[Value]) -> bytes:
    writers = _WRITERS
    return b"".join([writers[type(v)](v) for v in values])
