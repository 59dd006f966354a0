"""X11 provider API: trust is chosen only by `trusted`; no other parameter (gpu...) can raise it."""

from __future__ import annotations

import inspect

import pytest

from sandbox.errors import ProviderError
from sandbox.providers.x11 import X11Provider, parse_display


def test_setup_has_no_path_that_changes_trust_except_trusted() -> None:
    params = inspect.signature(X11Provider.setup).parameters
    assert set(params) == {
        "self",
        "display",
        "user_xauthority",
        "instance_dir",
        "container_hostname",
        "trusted",
        "uid",
        "gid",
    }
    assert params["trusted"].default is False
    assert params["trusted"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(("text", "number"), [(":0", 0), (":99.0", 99), ("unix:7", 7)])
def test_local_displays_parse(text: str, number: int) -> None:
    assert parse_display(text) == number


@pytest.mark.parametrize("text", ["localhost:10.0", "host:0", "", ":x", "/tmp/.X11-unix/X0"])
def test_remote_or_malformed_displays_are_refused(text: str) -> None:
    with pytest.raises(ProviderError, match="not a local display"):
        parse_display(text)
