"""Unit tests of app id rules, cgroup parents and systemd escaping."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import PolicyError
from sandbox.host.names import (
    app_slice_name,
    cgroup_parent_cgroupfs,
    check_app_id,
    is_valid_app_id,
    systemd_escape,
    systemd_unescape,
)

VALID = ["com.example.Game", "org.example.my-game", "io._private.App_2", "a.b.c"]
INVALID = [
    "Game",
    "com.example",
    "com.1example.Game",
    "com.my-example.Game",
    "com..Game",
    ".com.example.Game",
    "com.example.Game.",
    "com.example.Gäme",
    "com.example.G me",
    "a.b." + "c" * 252,
]


@pytest.mark.parametrize("app_id", VALID)
def test_valid_ids_pass_and_give_an_absolute_parent(app_id: str) -> None:
    assert is_valid_app_id(app_id)
    assert cgroup_parent_cgroupfs(app_id) == f"/sandbox/{app_id}"


@pytest.mark.parametrize("app_id", INVALID)
def test_invalid_ids_are_refused_naming_the_id(app_id: str) -> None:
    assert not is_valid_app_id(app_id)
    with pytest.raises(PolicyError, match="app id"):
        check_app_id(app_id)
    with pytest.raises(PolicyError):
        app_slice_name(app_id)


def test_slice_name_has_no_dash_inside_the_app_part() -> None:
    name = app_slice_name("org.example.my-game")
    assert name.startswith("sandbox-") and name.endswith(".slice")
    assert "-" not in name.removeprefix("sandbox-")


def test_overlong_slice_name_is_refused() -> None:
    app_id = "a.b." + "c-" * 124  # valid id, but every '-' grows to four characters
    assert is_valid_app_id(app_id)
    with pytest.raises(PolicyError, match="systemd allows"):
        app_slice_name(app_id)


@given(st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s))
def test_unescape_inverts_escape(text: str) -> None:
    escaped = systemd_escape(text)
    assert "-" not in escaped
    assert systemd_unescape(escaped) == text


@pytest.mark.skipif(shutil.which("systemd-escape") is None, reason="no systemd-escape here")
@settings(deadline=None)  # one systemd-escape process per example: slow on a loaded host
@given(st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s))
def test_escape_agrees_with_systemd_escape(text: str) -> None:
    out = subprocess.run(["systemd-escape", "--", text], capture_output=True, text=True, check=True)
    assert systemd_escape(text) == out.stdout.rstrip("\n")


@given(st.text(alphabet="abAB09_-.", max_size=40))
def test_app_id_regex_and_explained_rule_agree(text: str) -> None:
    from sandbox.host import names

    assert names.is_valid_app_id(text) == (names.app_id_problem(text) is None)


IMAGE_A, IMAGE_B = "sha256:" + "0a" * 32, "sha256:" + "0b" * 32


@pytest.mark.parametrize("app_id", [*VALID, "a.b." + "c" * 200])
def test_an_unverified_identity_is_a_valid_id_stable_per_image_and_reversible(app_id: str) -> None:
    from sandbox.host.names import unverified_app_id, unverified_of

    ident = unverified_app_id(app_id, IMAGE_A)
    assert is_valid_app_id(ident) and app_slice_name(ident) and cgroup_parent_cgroupfs(ident)
    assert ident == unverified_app_id(app_id, IMAGE_A) == unverified_app_id(app_id, IMAGE_A[7:])
    assert ident != unverified_app_id(app_id, IMAGE_B)
    assert unverified_of(ident) == app_id and unverified_of(app_id) is None


def test_an_unverified_identity_refuses_what_it_cannot_name() -> None:
    from sandbox.host.names import unverified_app_id

    with pytest.raises(PolicyError, match="too long to run as an unverified copy"):
        unverified_app_id("a.b." + "c" * 240, IMAGE_A)
    with pytest.raises(PolicyError, match="not a sha256 digest"):
        unverified_app_id("a.b.c", "app:latest")
    with pytest.raises(PolicyError, match="app id"):
        unverified_app_id("Game", IMAGE_A)
