"""Integration: the devices probe against umockdev-mocked udev devices and mknod'd NVIDIA nodes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from integration.components import missing
from sandbox.probes import devices

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "devices"
FIXTURE_FILES = sorted(FIXTURES.glob("*.umockdev"))
# umockdev_run (the path of umockdev-run) comes from integration/conftest.py.
NVIDIA_VERSION_TEXT = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.154.05  Thu Dec 28 22:39:44 UTC 2023\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
# The nodes the driver would create: name -> (major, minor).
NVIDIA_NODES = {
    "nvidia0": (195, 0),
    "nvidiactl": (195, 255),
    "nvidia-uvm": (508, 0),
    "nvidia-modeset": (195, 254),
}
# Prints the devices facts as JSON; runs inside umockdev-run so that pyudev sees the mocks.
SNIPPET = (
    "import json, os; from sandbox.probes import devices; "
    "from sandbox.policy.facts import to_jsonable; "
    "print(json.dumps(to_jsonable(devices.probe(os.environ))))"
)


@pytest.fixture
def nvidia_env(tmp_path: Path) -> dict[str, str]:
    """A scratch dev root with real NVIDIA-numbered char devices, and a driver version file."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name, (major, minor) in NVIDIA_NODES.items():
        try:
            os.mknod(dev / name, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        except PermissionError:
            missing("mknod of NVIDIA-numbered char devices needs root or CAP_MKNOD")
    version = tmp_path / "nvidia-version"
    version.write_text(NVIDIA_VERSION_TEXT)
    return {devices.ENV_DEV_ROOT: str(dev), devices.ENV_NVIDIA_VERSION_FILE: str(version)}


def fixture_numbers(files: Sequence[Path]) -> dict[str, tuple[int, int]]:
    """DEVNAME -> (MAJOR, MINOR) as the fixtures declare them, so numbers are not restated."""
    numbers: dict[str, tuple[int, int]] = {}
    for file in files:
        for block in file.read_text().split("\n\n"):
            props = dict(
                line[3:].split("=", 1) for line in block.splitlines() if line.startswith("E: ")
            )
            if "DEVNAME" in props:
                numbers[props["DEVNAME"]] = (int(props["MAJOR"]), int(props["MINOR"]))
    return numbers


def run_probe(
    argv_prefix: Sequence[str], extra_env: Mapping[str, str], command: Sequence[str]
) -> tuple[dict[str, Any], str]:
    env = {**os.environ, **extra_env}
    done = subprocess.run(
        [*argv_prefix, *command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stdout


def _umockdev(umockdev_run: str, files: Sequence[Path]) -> list[str]:
    return [umockdev_run, *(arg for f in files for arg in ("-d", str(f))), "--"]


def _node(numbers: Mapping[str, tuple[int, int]], name: str) -> dict[str, Any]:
    major, minor = numbers[name]
    return {"node": name, "major": major, "minor": minor}


def test_mocked_devices_are_classified(umockdev_run: str, nvidia_env: dict[str, str]) -> None:
    numbers = fixture_numbers(FIXTURE_FILES)
    facts, raw = run_probe(
        _umockdev(umockdev_run, FIXTURE_FILES), nvidia_env, [sys.executable, "-c", SNIPPET]
    )
    assert facts["available"] is True
    assert facts["udev_properties"] is True

    gpus = facts["gpus"]
    assert [{k: g[k] for k in ("node", "major", "minor")} for g in gpus] == [
        _node(numbers, "/dev/dri/renderD128"),
        _node(numbers, "/dev/dri/renderD129"),
    ]
    intel, nvidia = gpus
    assert intel["card"] == _node(numbers, "/dev/dri/card0")
    assert (intel["vendor"], intel["vendor_id"], intel["driver"], intel["pci_slot"]) == (
        "Intel",
        "0x8086",
        "i915",
        "0000:00:02.0",
    )
    assert nvidia["card"] == _node(numbers, "/dev/dri/card1")
    assert (nvidia["vendor"], nvidia["vendor_id"], nvidia["driver"], nvidia["pci_slot"]) == (
        "NVIDIA",
        "0x10de",
        "nvidia",
        "0000:01:00.0",
    )

    assert facts["webcams"] == [
        {
            **_node(numbers, "/dev/video0"),
            "product": "Test Webcam",
            "media": _node(numbers, "/dev/media0"),
        }
    ]
    assert facts["gamepads"] == [
        {
            **_node(numbers, "/dev/input/event2"),
            "name": "Test Gamepad",
            "js": [_node(numbers, "/dev/input/js0")],
        }
    ]
    # The metadata node, the keyboard and the mouse must appear nowhere, not even as extras.
    for absent in ("/dev/video1", "/dev/input/event0", "/dev/input/event1", "/dev/input/mouse0"):
        assert absent in numbers  # the fixture does declare it
        assert absent not in raw

    dev_root = nvidia_env[devices.ENV_DEV_ROOT]
    assert facts["nvidia"]["driver_version"] == "535.154.05"
    assert sorted((n["node"], n["major"], n["minor"]) for n in facts["nvidia"]["nodes"]) == sorted(
        (os.path.join(dev_root, name), *num) for name, num in NVIDIA_NODES.items()
    )


def test_cli_probe_json_reports_mocked_devices(
    umockdev_run: str, nvidia_env: dict[str, str]
) -> None:
    """The same facts through `sandbox probe --json`, the way a user would look."""
    cli = shutil.which("sandbox")
    command = [cli] if cli else [sys.executable, "-m", "sandbox"]
    facts, _ = run_probe(
        _umockdev(umockdev_run, FIXTURE_FILES), nvidia_env, [*command, "probe", "--json"]
    )
    found = facts["devices"]
    assert found["available"] is True
    assert [g["node"] for g in found["gpus"]] == ["/dev/dri/renderD128", "/dev/dri/renderD129"]
    assert [c["node"] for c in found["webcams"]] == ["/dev/video0"]
    assert [p["node"] for p in found["gamepads"]] == ["/dev/input/event2"]
    assert found["nvidia"]["driver_version"] == "535.154.05"


def test_empty_testbed_reports_no_devices(umockdev_run: str, tmp_path: Path) -> None:
    env = {
        devices.ENV_DEV_ROOT: str(tmp_path),
        devices.ENV_NVIDIA_VERSION_FILE: str(tmp_path / "absent"),
    }
    facts, _ = run_probe(_umockdev(umockdev_run, []), env, [sys.executable, "-c", SNIPPET])
    assert facts["available"] is True
    assert (facts["gpus"], facts["webcams"], facts["gamepads"]) == ([], [], [])
    assert facts["nvidia"] == {"nodes": [], "driver_version": None, "caps": []}
    assert facts["udev_properties"] is False


def test_real_host_render_nodes_match_sysfs() -> None:
    """Unmocked: whatever this host has, the probe lists exactly sysfs's DRM render nodes."""
    facts = devices.probe(os.environ)
    assert facts.available, facts.reason
    drm = Path("/sys/class/drm")
    render = sorted(p.name for p in drm.glob("renderD*")) if drm.is_dir() else []
    assert sorted(g.node.rsplit("/", 1)[-1] for g in facts.gpus) == render
