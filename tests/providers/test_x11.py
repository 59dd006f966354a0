"""X11 provider API: trust is chosen only by `trusted`; no other parameter (gpu...) can raise it."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from sandbox.errors import ComponentUnavailableError, ProviderError
from sandbox.policy.plan import X11CookieRequest
from sandbox.providers.grant import ProviderContext
from sandbox.providers.x11 import X11Provider, display_number


def test_setup_has_no_path_that_changes_trust_except_trusted() -> None:
    # setup() reads only the instance context; everything about the display is the request's.
    assert set(inspect.signature(X11Provider.setup).parameters) == {"self", "ctx"}
    assert set(inspect.signature(X11Provider).parameters) == {"request"}
    assert {f.name for f in dataclasses.fields(X11CookieRequest)} == {
        "trusted",
        "display",
        "socket_path",
        "xauthority",
    }
    assert {f.name for f in dataclasses.fields(ProviderContext)} == {
        "app_id",
        "instance_dir",
        "uid",
        "gid",
        "hostname",
        "data_home",
    }
    assert X11Provider(X11CookieRequest(False, ":0", "/tmp/.X11-unix/X0")).name == "display.x11"
    trusted = X11Provider(X11CookieRequest(True, ":0", "/tmp/.X11-unix/X0"))
    assert trusted.name == "display.x11-trusted"


@pytest.mark.parametrize(("text", "number"), [(":0", 0), (":99.0", 99), ("unix:7", 7)])
def test_local_displays_parse(text: str, number: int) -> None:
    assert display_number(text) == number


@pytest.mark.parametrize("text", ["localhost:10.0", "host:0", "", ":x", "/tmp/.X11-unix/X0"])
def test_remote_or_malformed_displays_are_refused(text: str) -> None:
    with pytest.raises(ProviderError, match="not a local display"):
        display_number(text)


def test_the_requests_socket_is_used_as_given(tmp_path: Path) -> None:
    missing = f"{tmp_path}/no-such-X0"
    provider = X11Provider(X11CookieRequest(False, ":0", missing))
    ctx = ProviderContext("com.example.Game", tmp_path, 1000, 1000, "game", tmp_path)
    with pytest.raises(ProviderError, match=f"no X socket at {re.escape(missing)}"):
        provider.setup(ctx)


def test_a_missing_x_server_is_unavailable_not_bad_input(tmp_path: Path) -> None:
    from sandbox.cli import exit_code_for

    provider = X11Provider(X11CookieRequest(False, ":0", f"{tmp_path}/no-such-X0"))
    ctx = ProviderContext("com.example.Game", tmp_path, 1000, 1000, "game", tmp_path)
    with pytest.raises(ComponentUnavailableError) as caught:
        provider.setup(ctx)
    assert exit_code_for(caught.value) == 3
