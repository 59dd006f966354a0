"""Unit tests for the capability catalog parser: completeness, strict keys, implies rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandbox.errors import PolicyError
from sandbox.policy.catalog import Catalog, StorageTemplate, parse_catalog
from sandbox.policy.vocabulary import Capability, Risk, Storage


def _docs() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {
        f"{c}.toml": {"title": c.value, "summary": f"use {c}", "risk": "medium", "grants": "x"}
        for c in Capability
    }
    docs["storage.toml"] = {
        "title": "Storage: {name}",
        "summary": "Keep {name}",
        "risk": "low",
        "grants": "a dir for {name}",
    }
    docs["audio.record.toml"]["implies"] = ["audio.playback"]
    return docs


def test_complete_docs_parse_with_one_def_per_capability_and_storage() -> None:
    catalog = parse_catalog(_docs())
    keys = [d.key for d in catalog.all()]
    assert sorted(map(str, keys)) == sorted([*map(str, Capability), "storage"])
    assert len(keys) == len(set(keys))
    assert catalog.get(Capability.AUDIO_RECORD).implies == (Capability.AUDIO_PLAYBACK,)
    assert catalog.risk(Capability.GPU) is Risk.MEDIUM


def test_storage_permissions_share_the_template_with_the_name_filled_in() -> None:
    catalog = parse_catalog(_docs())
    saves = catalog.get(Storage("saves"))
    assert saves.key is StorageTemplate.STORAGE
    assert (saves.title, saves.summary, saves.grants) == (
        "Storage: saves",
        "Keep saves",
        "a dir for saves",
    )
    assert catalog.risk(Storage("cache")) is Risk.LOW


def test_implied_is_transitive() -> None:
    docs = _docs()
    docs["gamepad.toml"]["implies"] = ["audio.record"]
    docs["gamepad.toml"]["risk"] = "high"
    catalog = parse_catalog(docs)
    assert catalog.implied(Capability.GAMEPAD) == {
        Capability.AUDIO_RECORD,
        Capability.AUDIO_PLAYBACK,
    }
    assert catalog.implied(Capability.GPU) == frozenset()


def _mutated(file: str, key: str, value: Any) -> dict[str, dict[str, Any]]:
    docs = copy.deepcopy(_docs())
    if value is _DELETE:
        del docs[file][key]
    else:
        docs[file][key] = value
    return docs


_DELETE = object()


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ({k: v for k, v in _docs().items() if k != "webcam.toml"},
         "capabilities/: missing definitions: webcam.toml"),
        ({**_docs(), "bluetooth.toml": _docs()["gpu.toml"]},
         "capabilities/bluetooth.toml: unknown capability 'bluetooth'"),
        ({**_docs(), "gpu.yaml": _docs()["gpu.toml"]}, "capabilities/gpu.yaml: capability files"),
        (_mutated("gpu.toml", "colour", "red"), "capabilities/gpu.toml: colour: unknown key"),
        (_mutated("gpu.toml", "title", _DELETE), "capabilities/gpu.toml: title: is required"),
        (_mutated("gpu.toml", "title", 3), "capabilities/gpu.toml: title: must be a string"),
        (_mutated("gpu.toml", "title", ""), "capabilities/gpu.toml: title: must be non-empty"),
        (_mutated("gpu.toml", "summary", "a\nb"), "gpu.toml: summary: must be one line"),
        (_mutated("gpu.toml", "summary", "s" * 201), "summary: is 201 characters long"),
        (_mutated("gpu.toml", "grants", "{name}"), "capabilities/gpu.toml: grants: unexpected"),
        (_mutated("storage.toml", "grants", "{path}"),
         "capabilities/storage.toml: grants: unexpected brace (only {name}"),
        (_mutated("gpu.toml", "risk", "extreme"), "risk: must be one of low, medium, high"),
        (_mutated("gpu.toml", "risk", "HIGH"), "risk: must be one of low, medium, high"),
        (_mutated("gpu.toml", "risk", 3), "risk: must be one of"),
        (_mutated("gpu.toml", "implies", "network"), "implies: must be an array"),
        (_mutated("gpu.toml", "implies", ["teleport"]), "implies[0]: unknown capability"),
        (_mutated("gpu.toml", "implies", ["gpu"]), "implies[0]: a capability cannot imply itself"),
        (_mutated("gpu.toml", "implies", ["network", "network"]), "implies[1]: duplicate"),
        (_mutated("audio.playback.toml", "implies", ["audio.record"]), "implies: cycle"),
        ({**_mutated("network.toml", "implies", ["webcam"]),
          "webcam.toml": {**_docs()["webcam.toml"], "risk": "high"}},
         "network (medium risk) implies webcam (high risk)"),
    ],
)  # fmt: skip
def test_bad_catalog_is_refused_naming_file_and_key(
    docs: dict[str, dict[str, Any]], message: str
) -> None:
    with pytest.raises(PolicyError) as info:
        parse_catalog(docs)
    assert message in str(info.value)


def test_cycle_message_names_the_cycle() -> None:
    docs = _docs()
    docs["gpu.toml"]["implies"] = ["network"]
    docs["network.toml"]["implies"] = ["gpu"]
    with pytest.raises(PolicyError, match=r"cycle (gpu -> network -> gpu|network -> gpu -> net)"):
        parse_catalog(docs)


def test_hand_built_catalog_without_a_def_fails_closed() -> None:
    with pytest.raises(PolicyError, match="no definition for gpu"):
        Catalog(defs=()).get(Capability.GPU)
