"""Codec tests: captured real traffic round-trips byte for byte; caps and violations; fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pulse_helpers import frames, records

from sandbox.errors import ProviderError
from sandbox.providers.pulse.protocol import (
    CONTROL_CHANNEL,
    DESCRIPTOR,
    Frame,
    FrameDecoder,
    parse_packet,
)
from sandbox.providers.pulse.tagstruct import (
    S64,
    U8,
    U32,
    U64,
    Arbitrary,
    Bool,
    ChannelMap,
    CVolume,
    FormatInfo,
    Proplist,
    SampleSpec,
    Str,
    Timeval,
    Usec,
    Value,
    Volume,
    parse_tagstruct,
    serialize_tagstruct,
)

SESSIONS = ["paplay", "pactl_list", "parecord"]


@pytest.mark.parametrize("name", SESSIONS)
@pytest.mark.parametrize("direction", ["C", "S"])
def test_captured_frames_round_trip(name: str, direction: str) -> None:
    got = frames(name, direction)
    assert got, "the fixture holds traffic in both directions"
    raw = b"".join(chunk for mark, chunk in records(name) if mark == direction)
    assert b"".join(f.encode() for f in got) == raw
    for f in got:
        if f.is_control:
            assert serialize_tagstruct(parse_tagstruct(f.payload)) == f.payload
            parse_packet(f)


def test_captured_session_uses_many_tag_types() -> None:
    kinds: set[type] = set()
    for f in frames("pactl_list", "S") + frames("paplay", "C"):
        if f.is_control:
            kinds |= {type(v) for v in parse_tagstruct(f.payload)}
    assert {U32, Str, Proplist, SampleSpec, ChannelMap, CVolume, Usec, Bool, FormatInfo} <= kinds


@pytest.mark.parametrize("name", SESSIONS)
def test_decoder_is_independent_of_chunking(name: str) -> None:
    raw = b"".join(chunk for mark, chunk in records(name) if mark == "C")
    whole = FrameDecoder(1 << 20, 1 << 20).feed(raw)
    dec = FrameDecoder(1 << 20, 1 << 20)
    pieces: list[Frame] = []
    for i in range(0, len(raw), 7):
        pieces.extend(dec.feed(raw[i : i + 7]))
    assert pieces == whole
    assert dec.buffered == 0


def _descriptor(length: int, channel: int, flags: int = 0, hi: int = 0, lo: int = 0) -> bytes:
    return DESCRIPTOR.pack(length, channel, hi, lo, flags)


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (_descriptor(1 << 20, CONTROL_CHANNEL), "exceeds"),
        (_descriptor(2 << 20, 3), "exceeds"),
        (_descriptor(16, 3, flags=0x80000000), "shared memory"),
        (_descriptor(16, 3, flags=0x20000000), "shared memory"),
        (_descriptor(16, 3, flags=4), "seek mode"),
        (_descriptor(16, CONTROL_CHANNEL, flags=1), "flags or offset"),
        (_descriptor(16, CONTROL_CHANNEL, lo=1), "flags or offset"),
        (_descriptor(0, CONTROL_CHANNEL), "empty"),
    ],
)
def test_bad_descriptors_are_rejected_before_their_payload(head: bytes, why: str) -> None:
    with pytest.raises(ProviderError, match=why):
        FrameDecoder(256 * 1024, 1 << 20).feed(head)


def test_negative_seek_offset_round_trips() -> None:
    f = Frame(5, -4096, 1, b"\x01\x02")
    (back,) = FrameDecoder(1024, 1024).feed(f.encode())
    assert back == f


@pytest.mark.parametrize(
    "payload",
    [
        b"t\xff\xfe\x00",  # not UTF-8
        b"tabc",  # unterminated
        b"L\x00\x00",  # truncated
        b"Q",  # unknown tag
        b"m\x21" + bytes(33),  # 33 channels
        b"v\x01\xff\xff\xff\xff",  # volume out of range
        b"Pt\x00L\x00\x00\x00\x01x\x00\x00\x00\x01aN",  # empty key
        b"Ptk\x00L\x00\x00\x00\x02x\x00\x00\x00\x01aN",  # length mismatch
        b"Ptk\x00L\x00\x01\x00\x01x\x00\x01\x00\x01",  # value over 64 KiB
        b"fB\x01t",  # format info without proplist
    ],
)
def test_malformed_tagstructs_raise(payload: bytes) -> None:
    with pytest.raises(ProviderError):
        parse_tagstruct(payload)


_u32 = st.integers(0, 0xFFFFFFFF)
_u64 = st.integers(0, (1 << 64) - 1)
_key = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
_proplist = st.builds(
    lambda items: Proplist(tuple(items)),
    st.lists(st.tuples(_key, st.binary(max_size=40)), max_size=4),
)
_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30)
VALUES: st.SearchStrategy[Value] = st.one_of(
    st.builds(U32, _u32),
    st.builds(U8, st.integers(0, 255)),
    st.builds(U64, _u64),
    st.builds(S64, st.integers(-(1 << 63), (1 << 63) - 1)),
    st.builds(Usec, _u64),
    st.builds(Volume, _u32),
    st.builds(Timeval, _u32, _u32),
    st.builds(Str, st.none() | _text),
    st.builds(Bool, st.booleans()),
    st.builds(SampleSpec, st.integers(0, 255), st.integers(0, 255), _u32),
    st.builds(ChannelMap, st.lists(st.integers(0, 255), max_size=32).map(tuple)),
    st.builds(CVolume, st.lists(st.integers(0, 0x7FFFFFFF), max_size=32).map(tuple)),
    st.builds(Arbitrary, st.binary(max_size=64)),
    _proplist,
    st.builds(FormatInfo, st.integers(0, 255), _proplist),
)


@given(st.lists(VALUES, max_size=12))
def test_every_value_round_trips(values: list[Value]) -> None:
    assert parse_tagstruct(serialize_tagstruct(values)) == tuple(values)


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_parser_never_escapes_with_another_error(data: bytes) -> None:
    try:
        values = parse_tagstruct(data)
    except ProviderError:
        return
    assert serialize_tagstruct(values) == data


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_decoder_never_escapes_with_another_error(data: bytes) -> None:
    dec = FrameDecoder(256, 256)
    try:
        for f in dec.feed(data):
            assert len(f.payload) <= 256
    except ProviderError:
        return
    assert dec.buffered < 20 + 256 + 1


def test_descriptor_is_five_big_endian_words() -> None:
    f = Frame(CONTROL_CHANNEL, 0, 0, b"L\x00\x00\x00\x14L\x00\x00\x00\x01")
    assert f.encode()[:20] == struct.pack("!5I", 10, 0xFFFFFFFF, 0, 0, 0)
