"""The `sandbox probe --json` document's shape, rendered by the CLI from HostFacts built here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.cli.probe_cmd import render_json
from sandbox.policy.facts import (
    AudioFacts,
    AudioServerKind,
    CgroupFacts,
    CgroupLayout,
    DeviceFacts,
    DeviceNode,
    DockerFacts,
    EngineKind,
    Gamepad,
    GpuDevice,
    HostFacts,
    UserFacts,
    WaylandFacts,
    Webcam,
    X11Facts,
)

TOP_LEVEL = {"docker", "x11", "wayland", "audio", "devices", "cgroups", "user"}

FOUND = HostFacts(
    docker=DockerFacts(True, endpoint="unix:///run/docker.sock", engine=EngineKind.DOCKER),
    x11=X11Facts(True, display=":1", socket_path="/tmp/.X11-unix/X1", security_extension=True),
    wayland=WaylandFacts(True, display="wayland-1", socket_path="/run/user/1000/wayland-1"),
    audio=AudioFacts(True, socket_path="/run/user/1000/pulse/native", server=AudioServerKind.OTHER),
    devices=DeviceFacts(
        True,
        gpus=(
            GpuDevice("/dev/dri/renderD128", 226, 128, card=DeviceNode("/dev/dri/card0", 226, 0)),
        ),
        webcams=(Webcam("/dev/video0", 81, 0, media=DeviceNode("/dev/media0", 237, 0)),),
        gamepads=(Gamepad("/dev/input/event5", 13, 69, js=(DeviceNode("/dev/input/js0", 13, 0),)),),
    ),
    cgroups=CgroupFacts(True, layout=CgroupLayout.HYBRID),
    user=UserFacts(True, uid=1000, gid=1000, home="/home/u", via_sudo=True),
)
MISSING = HostFacts(
    docker=DockerFacts(False, "cannot connect to unix:///nowhere.sock"),
    x11=X11Facts(False, "DISPLAY is not set"),
    wayland=WaylandFacts(False, "WAYLAND_DISPLAY is not set"),
    audio=AudioFacts(False, "no PulseAudio socket"),
    devices=DeviceFacts(False, "pyudev cannot read udev"),
    cgroups=CgroupFacts(False, "no cgroup hierarchy is mounted"),
    user=UserFacts(False, "no passwd entry for uid 4242"),
)


def _doc(facts: HostFacts) -> dict[str, Any]:
    doc = json.loads(render_json(facts))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("facts", [FOUND, MISSING], ids=["found", "missing"])
def test_seven_resources_each_with_available_and_a_reason_when_not(facts: HostFacts) -> None:
    doc = _doc(facts)
    assert set(doc) == TOP_LEVEL
    for name in TOP_LEVEL:
        section = doc[name]
        assert isinstance(section["available"], bool), name
        if section["available"]:
            assert "reason" not in section, name
        else:
            assert isinstance(section["reason"], str) and section["reason"], name
    x11 = doc["x11"]
    assert isinstance(x11["security_extension"], bool)
    assert isinstance(x11["xres_extension"], bool)


def test_values_come_from_the_facts() -> None:
    doc = _doc(FOUND)
    assert (doc["x11"]["security_extension"], doc["x11"]["xres_extension"]) == (True, False)
    assert doc["docker"]["engine"] == str(FOUND.docker.engine)
    assert doc["user"]["via_sudo"] is True
    assert doc["cgroups"]["layout"] == "hybrid"


def test_device_lists_carry_node_major_minor() -> None:
    devices = _doc(FOUND)["devices"]
    d = FOUND.devices
    expected: dict[str, list[tuple[str, int, int]]] = {
        "gpus": [(g.node, g.major, g.minor) for g in d.gpus],
        "webcams": [(c.node, c.major, c.minor) for c in d.webcams],
        "gamepads": [(p.node, p.major, p.minor) for p in d.gamepads],
    }
    for key, nodes in expected.items():
        entries = devices[key]
        assert isinstance(entries, list), key
        assert [(e["node"], e["major"], e["minor"]) for e in entries] == nodes, key
        assert all(isinstance(e[k], int) for e in entries for k in ("major", "minor"))
    for key in ("gpus", "webcams", "gamepads"):
        assert _doc(MISSING)["devices"][key] == []
