"""Integration: `sandbox plan --json` under umockdev lists exactly the granted device nodes."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from integration.components import missing
from integration.test_devices_umockdev import FIXTURES, fixture_numbers, run_probe
from sandbox.probes import devices

pytestmark = pytest.mark.integration

MANIFEST = """\
manifest-version = 1

[app]
id = "org.sandboxtest.Devices"
name = "Devices"
version = "1.0"
command = ["/bin/true"]

[capabilities]
gpu = true
webcam = true
gamepad = true
"""
# The NVIDIA nodes of a real H200 host (numbers as seen there); caps are MIG nodes.
H200_NODES = {
    "nvidia0": (195, 0),
    "nvidiactl": (195, 255),
    "nvidia-uvm": (238, 0),
    "nvidia-uvm-tools": (238, 1),
}
H200_CAPS = {"nvidia-caps/nvidia-cap1": (241, 1), "nvidia-caps/nvidia-cap2": (241, 2)}
H200_VERSION = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  "
    "(dvs-builder@U22-I3-AF03-09-1)  Thu Nov  6 00:00:00 UTC 2025\n"
)
INPUT_ONLY = [FIXTURES / "input.umockdev"]
ALL = sorted(FIXTURES.glob("*.umockdev"))


@pytest.fixture
def h200_env(tmp_path: Path) -> dict[str, str]:
    dev = tmp_path / "dev"
    (dev / "nvidia-caps").mkdir(parents=True)
    for name, (major, minor) in {**H200_NODES, **H200_CAPS}.items():
        try:
            os.mknod(dev / name, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        except PermissionError:
            missing("mknod of NVIDIA-numbered char devices needs root or CAP_MKNOD")
    version = tmp_path / "nvidia-version"
    version.write_text(H200_VERSION)
    return {devices.ENV_DEV_ROOT: str(dev), devices.ENV_NVIDIA_VERSION_FILE: str(version)}


def _plan(umockdev_run: str, files: list[Path], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    manifest = tmp / "sandbox.toml"
    manifest.write_text(MANIFEST)
    cli = shutil.which("sandbox")
    command = [cli] if cli else [sys.executable, "-m", "sandbox"]
    prefix = [umockdev_run, *(a for f in files for a in ("-d", str(f))), "--"]
    out, _ = run_probe(prefix, env, [*command, "plan", "--json", str(manifest)])
    return out


def _devices(out: dict[str, Any]) -> dict[tuple[str, int, int], str]:
    return {(d["path"], d["major"], d["minor"]): d["capability"] for d in out["plan"]["devices"]}


def test_plan_lists_exactly_the_expected_devices(
    umockdev_run: str, h200_env: dict[str, str], tmp_path: Path
) -> None:
    numbers = fixture_numbers(ALL)
    out = _plan(umockdev_run, ALL, h200_env, tmp_path)
    root = h200_env[devices.ENV_DEV_ROOT]

    def fixture(name: str, cap: str) -> tuple[tuple[str, int, int], str]:
        return (name, *numbers[name]), cap

    expected = dict(
        [
            fixture("/dev/dri/renderD128", "gpu"),
            fixture("/dev/dri/renderD129", "gpu"),
            fixture("/dev/video0", "webcam"),
            fixture("/dev/media0", "webcam"),
            fixture("/dev/input/event2", "gamepad"),
            fixture("/dev/input/js0", "gamepad"),
        ]
    )
    engine_has_nvidia = any(r["kind"] == "NvidiaRequest" for r in out["plan"]["requests"])
    if not engine_has_nvidia:  # this engine has no nvidia runtime or CDI: plain nodes
        expected |= {(os.path.join(root, n), *num): "gpu" for n, num in H200_NODES.items()}
    assert _devices(out) == expected
    raw = str(out["plan"]["devices"])
    for absent in ("/dev/video1", "/dev/input/event0", "/dev/input/event1", "/dev/input/mouse0"):
        assert absent in numbers and absent not in raw  # declared by the fixtures, never planned
    assert "nvidia-cap" not in raw
    assert {g["name"] for g in out["plan"]["groups"]} <= {"render", "video", "input"}
    states = {p["permission"]: p for r in out["review"]["risks"] for p in r["permissions"]}
    assert {states[c]["state"] for c in ("gpu", "webcam", "gamepad")} == {"granted"}
    if not engine_has_nvidia:
        assert any("580.159.04" in n for n in out["review"]["notes"])


def test_keyboard_and_mouse_never_under_any_grant(umockdev_run: str, tmp_path: Path) -> None:
    env = {
        devices.ENV_DEV_ROOT: str(tmp_path / "nodev"),
        devices.ENV_NVIDIA_VERSION_FILE: str(tmp_path / "absent"),
    }
    numbers = fixture_numbers(INPUT_ONLY)
    out = _plan(umockdev_run, INPUT_ONLY, env, tmp_path)
    assert _devices(out) == {
        ("/dev/input/event2", *numbers["/dev/input/event2"]): "gamepad",
        ("/dev/input/js0", *numbers["/dev/input/js0"]): "gamepad",
    }
    states = {p["permission"]: p for r in out["review"]["risks"] for p in r["permissions"]}
    assert states["gpu"]["state"] == "unavailable"
    # no camera now, but udevd's properties are there: granted, added when plugged in
    assert states["webcam"]["state"] == "granted"
    assert "none plugged in now" in states["webcam"]["detail"]
    assert any("llvmpipe" in n for n in out["review"]["notes"])
