"""The strict site policy and user override file forms: parse, errors naming file and key, dump."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import pytest
from engine_support import APP_ID, catalog, manifest

from sandbox.errors import PolicyError
from sandbox.policy.layer_files import dump_override, parse_override, parse_site_policy, parse_size
from sandbox.policy.layers import BUILTIN_DEFAULTS, Decision, UserOverride, merge
from sandbox.policy.vocabulary import Capability, Risk, Storage

C = Capability


def test_site_example_parses() -> None:
    text = resources.files("sandbox").joinpath("policies/site-example.toml").read_text()
    site = parse_site_policy(tomllib.loads(text), "site-example.toml")
    assert C.DISPLAY_X11_TRUSTED in site.deny
    assert site.denied_for("com.example.Game") >= {C.NETWORK}
    assert site.max_memory_bytes == 4 * 1024**3
    # and means what it says in a merge
    policy = merge(BUILTIN_DEFAULTS, manifest(network=True), site, None, catalog=catalog())
    assert policy.decision(C.NETWORK) is Decision.DENIED_BY_SITE


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"denny": {}}, "site.toml: denny: unknown key"),
        (
            {"deny": {"capabilities": ["camera"]}},
            "site.toml: deny.capabilities[0]: unknown capability 'camera'",
        ),
        ({"deny": {"capabilities": "gpu"}}, "deny.capabilities: expected a list"),
        ({"deny": {"max-risk": "extreme"}}, "deny.max-risk: expected one of"),
        ({"deny": {"everything": True}}, "deny.everything: unknown key"),
        ({"limits": {"max-memory": "lots"}}, "limits.max-memory: expected a size"),
        ({"limits": {"max-cpus": 0}}, "limits.max-cpus: must be greater than zero"),
        ({"limits": {"max-pids": 1.5}}, "limits.max-pids: expected an integer"),
        ({"limits": {"max-pids": True}}, "limits.max-pids: expected an integer"),
        ({"apps": {"com.x.Y": {"grant": ["gpu"]}}}, 'apps."com.x.Y".grant: unknown key'),
        ({"apps": {"com.x.Y": {"deny": ["storage.BAD"]}}}, 'apps."com.x.Y".deny[0]: storage.BAD'),
        ({"version": 2}, "version: unsupported version 2"),
    ],
)
def test_site_policy_errors_name_file_and_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_site_policy(doc, "site.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("site.toml: ")


def test_site_policies_combine_strictly() -> None:
    a = parse_site_policy(
        {"deny": {"capabilities": ["gpu"], "max-risk": "high"}, "limits": {"max-pids": 10}}, "a"
    )
    b = parse_site_policy(
        {"deny": {"capabilities": ["webcam"], "max-risk": "medium"}, "limits": {"max-pids": 20}},
        "b",
    )
    both = a.combine(b)
    assert both.deny == {C.GPU, C.WEBCAM}
    assert both.max_risk is Risk.MEDIUM
    assert both.max_pids == 10
    assert both.sources == ("a", "b")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"grant": ["gpu"], "revoke": ["gpu"]}, "both granted and revoked: gpu"),
        ({"grant": ["gpus"]}, "grant[0]: unknown capability"),
        ({"app-id": "org.other.App"}, "app-id: 'org.other.App' does not match"),
        ({"reset": True}, "reset: unknown key"),
    ],
)
def test_override_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_override(doc, "o.toml", APP_ID)
    assert message in str(err.value)
    assert str(err.value).startswith("o.toml: ")


def test_override_dump_round_trips() -> None:
    o = UserOverride(APP_ID, frozenset({C.NETWORK, Storage("saves")}), frozenset({C.GPU}))
    assert parse_override(tomllib.loads(dump_override(o)), "o.toml", APP_ID) == o
    empty = UserOverride(APP_ID)
    assert parse_override(tomllib.loads(dump_override(empty)), "o.toml", APP_ID) == empty


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * 1024**2),
        ("2G", 2 * 1024**3),
        ("4gib", 4 * 1024**3),
        (4096, 4096),
        ("1.5K", 1536),
    ],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text, "x") == size


@pytest.mark.parametrize("bad", ["", "-1G", "1X", 0, True, 1.5])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(PolicyError, match=r"^x: "):
        parse_size(bad, "x")
