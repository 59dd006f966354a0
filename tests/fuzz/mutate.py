"""A tiny, fast, seeded mutation fuzzer: valid inputs in, hostile variants out; no I/O.

Each input is a seed with one to four edits: bit flips, interesting bytes and 32-bit numbers,
inserted format tokens (deep nesting, huge numbers, bad UTF-8, lone surrogates), deleted,
duplicated or truncated ranges, and splices with another seed. The same (seed list, rng seed)
always gives the same inputs, so a finding is replayed by its index.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

INTERESTING_BYTES = b"\x00\x01\x7f\x80\xff\"'[]{}\\\n\r\t#=.,:- 0x"
INTERESTING_U32 = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 20, 256)

# Text formats (JSON, TOML, HTTP): what a hostile author writes by hand.
TEXT_TOKENS: tuple[bytes, ...] = (
    b"[" * 40,
    b"[" * 3000 + b"]" * 3000,
    b"{" * 50,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b"a = " + b"[" * 2000 + b"]" * 2000 + b"\n",
    b"x = " + b"{y=" * 500 + b"1" + b"}" * 500 + b"\n",
    b"a" + b".a" * 200 + b" = 1\n",
    b"[" + b"t." * 100 + b"t]\n",
    b"9" * 30,
    b"9" * 5000,
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1e999",
    b"-1e999",
    b"NaN",
    b"Infinity",
    b"inf",
    b"nan",
    b"1979-05-27T07:32:00Z",
    b"0x7fffffffffffffff",
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xe2\x80\xae",
    b"\x00",
    b'"""',
    b"'''",
    b"true",
    b"null",
    b'""',
    b"[]",
    b"{}",
    b'"a":1,"a":2',
    b"\n[limits]\ncpus = 1e999\n",
    b"\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n",
)


class Mutator:
    """Hostile variants of `seeds`, reproducibly from `rng_seed`."""

    def __init__(
        self, seeds: Sequence[bytes], rng_seed: int = 0, tokens: Sequence[bytes] = TEXT_TOKENS
    ) -> None:
        if not seeds:
            raise ValueError("a mutator needs at least one seed")
        self.seeds = list(seeds)
        self.rng = random.Random(rng_seed)
        self.tokens = list(tokens)
        self._ops: list[Callable[[bytearray], None]] = [
            self._flip,
            self._byte,
            self._u32,
            self._token,
            self._token,
            self._insert_random,
            self._delete,
            self._duplicate,
            self._truncate,
            self._splice,
        ]

    def one(self) -> bytes:
        """The next input: a seed as it is now and then, else a seed with 1 to 4 edits."""
        rng = self.rng
        data = bytearray(rng.choice(self.seeds))
        if rng.random() < 0.02:
            return bytes(data)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            rng.choice(self._ops)(data)
        return bytes(data)

    def mutate(self, data: bytes) -> bytes:
        """`data` with 1 to 3 edits (for one member of a structured input)."""
        out = bytearray(data)
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            self.rng.choice(self._ops)(out)
        return bytes(out)

    def _pos(self, data: bytearray) -> int:
        return self.rng.randrange(len(data) + 1)

    def _flip(self, data: bytearray) -> None:
        if data:
            i = self.rng.randrange(len(data))
            data[i] ^= 1 << self.rng.randrange(8)

    def _byte(self, data: bytearray) -> None:
        if data:
            data[self.rng.randrange(len(data))] = self.rng.choice(INTERESTING_BYTES)

    def _u32(self, data: bytearray) -> None:
        if len(data) >= 4:
            i = self.rng.randrange(len(data) - 3)
            data[i : i + 4] = struct.pack("!I", self.rng.choice(INTERESTING_U32))

    def _token(self, data: bytearray) -> None:
        i = self._pos(data)
        data[i:i] = self.rng.choice(self.tokens)

    def _insert_random(self, data: bytearray) -> None:
        i = self._pos(data)
        data[i:i] = self.rng.randbytes(self.rng.randrange(1, 9))

    def _delete(self, data: bytearray) -> None:
        if data:
            i = self.rng.randrange(len(data))
            del data[i : i + self.rng.randrange(1, 64)]

    def _duplicate(self, data: bytearray) -> None:
        if data:
            i = self.rng.randrange(len(data))
            chunk = data[i : i + self.rng.randrange(1, 256)]
            j = self._pos(data)
            data[j:j] = chunk * self.rng.choice((1, 1, 2, 16))

    def _truncate(self, data: bytearray) -> None:
        if data:
            del data[self.rng.randrange(len(data)) :]

    def _splice(self, data: bytearray) -> None:
        other = self.rng.choice(self.seeds)
        if data and other:
            i = self.rng.randrange(len(data))
            j = self.rng.randrange(len(other))
            data[i:] = other[j:]
