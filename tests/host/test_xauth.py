"""Xauthority codec: byte round trips, libXau's view through `xauth list`, and lookup rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.errors import ProviderError
from sandbox.host import xauth
from sandbox.host.xauth import Family, XauthEntry

entries_st = st.builds(
    XauthEntry,
    family=st.integers(0, 0xFFFF),
    address=st.binary(max_size=64),
    number=st.from_regex(r"[0-9]{0,4}", fullmatch=True),
    name=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
    data=st.binary(max_size=64),
)


@given(st.lists(entries_st, max_size=5))
def test_round_trip(entries: list[XauthEntry]) -> None:
    assert xauth.decode(xauth.encode(entries)) == tuple(entries)


@given(st.lists(entries_st, min_size=1, max_size=3), st.data())
def test_truncation_is_an_error_with_offset(entries: list[XauthEntry], data: st.DataObject) -> None:
    blob = xauth.encode(entries)
    cut = data.draw(st.integers(1, len(blob) - 1))
    # A cut exactly at a record boundary is a valid shorter file.
    boundaries = {len(xauth.encode(entries[:i])) for i in range(len(entries) + 1)}
    if cut in boundaries:
        return
    with pytest.raises(ProviderError, match="offset"):
        xauth.decode(blob[:cut])


def test_oversized_field_is_refused() -> None:
    with pytest.raises(ProviderError, match="address"):
        xauth.encode_entry(XauthEntry(Family.LOCAL, b"x" * 70000, "1", "N", b""))


@pytest.mark.skipif(shutil.which("xauth") is None, reason="xauth not installed")
def test_libxau_reads_what_we_write(tmp_path: Path) -> None:
    cookie = bytes(range(16))
    path = tmp_path / "auth"
    path.write_bytes(
        xauth.encode(
            [
                XauthEntry(Family.WILD, b"", "42", xauth.MIT_MAGIC_COOKIE, cookie),
                XauthEntry(Family.LOCAL, b"box", "42", xauth.MIT_MAGIC_COOKIE, cookie),
            ]
        )
    )
    out = subprocess.run(
        ["xauth", "-f", str(path), "list"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    lines = [line.split() for line in out if line]
    assert [line[1:] for line in lines] == [[xauth.MIT_MAGIC_COOKIE, cookie.hex()]] * 2
    assert lines[0][0].endswith("#:42")  # xauth prints a wildcard as "#ffff#..."
    assert lines[1][0] == "box/unix:42"


@pytest.mark.skipif(shutil.which("xauth") is None, reason="xauth not installed")
def test_we_read_what_libxau_writes(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    cookie = "00112233445566778899aabbccddeeff"
    subprocess.run(
        ["xauth", "-f", str(path), "add", "otherhost/unix:7", xauth.MIT_MAGIC_COOKIE, cookie],
        check=True,
        capture_output=True,
    )
    (entry,) = xauth.decode(path.read_bytes())
    assert entry == XauthEntry(
        Family.LOCAL, b"otherhost", "7", xauth.MIT_MAGIC_COOKIE, bytes.fromhex(cookie)
    )


def test_find_cookie_follows_libxau_order() -> None:
    a = XauthEntry(Family.LOCAL, b"other", "1", xauth.MIT_MAGIC_COOKIE, b"a")
    b = XauthEntry(Family.LOCAL, b"me", "2", xauth.MIT_MAGIC_COOKIE, b"b")
    c = XauthEntry(Family.WILD, b"", "1", xauth.MIT_MAGIC_COOKIE, b"c")
    d = XauthEntry(Family.LOCAL, b"me", "1", xauth.MIT_MAGIC_COOKIE, b"d")
    assert xauth.find_cookie([a, b, c, d], 1, b"me") == c
    assert xauth.find_cookie([a, b, d, c], 1, b"me") == d
    assert xauth.find_cookie([a, b], 1, b"me") is None
    assert xauth.find_cookie([b], 2, b"me") == b
