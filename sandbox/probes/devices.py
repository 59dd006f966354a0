"""Devices probe: enumerate udev (pyudev) and the NVIDIA nodes into DeviceFacts; decides nothing."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from sandbox.host.udev import UdevRecord, node_sort_key, parse_number
from sandbox.policy.facts import DeviceFacts, DeviceNode, NvidiaFacts
from sandbox.probes.device_classify import (
    classify_gamepads,
    classify_gpus,
    classify_webcams,
    has_udev_properties,
)

DEFAULT_DEV_ROOT = "/dev"
DEFAULT_NVIDIA_VERSION_FILE = "/proc/driver/nvidia/version"
# Test hooks only (documented in docs/devices.md): point the NVIDIA lookup at a scratch dir.
ENV_DEV_ROOT = "SANDBOX_DEV_ROOT"
ENV_NVIDIA_VERSION_FILE = "SANDBOX_NVIDIA_VERSION_FILE"
UDEV_DATABASE_DIR = "/run/udev/data"

SUBSYSTEMS = ("drm", "video4linux", "media", "input")
# Only these sysfs attributes are read: each read is a file open, and the rules need no more.
ATTRIBUTES = ("vendor", "name", "dev")

_NVIDIA_NODE = re.compile(r"nvidia(\d+|ctl|-uvm|-uvm-tools|-modeset)")
_NVIDIA_CAPS_DIR = "nvidia-caps"
_NVIDIA_VERSION = re.compile(r"NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s")


class UdevDeviceLike(Protocol):
    """The part of pyudev.Device this probe reads; fakes in tests implement the same."""

    @property
    def sys_path(self) -> str: ...
    @property
    def subsystem(self) -> str | None: ...
    @property
    def device_type(self) -> str | None: ...
    @property
    def device_node(self) -> str | None: ...
    @property
    def device_number(self) -> int: ...
    @property
    def driver(self) -> str | None: ...
    @property
    def properties(self) -> Mapping[str, str]: ...
    @property
    def attributes(self) -> Any: ...  # pyudev.Attributes: .get(name) -> bytes | None
    @property
    def parent(self) -> UdevDeviceLike | None: ...


def _attribute(device: UdevDeviceLike, name: str) -> str | None:
    try:
        raw = device.attributes.get(name)
    except (OSError, KeyError, UnicodeDecodeError):  # unreadable sysfs files are just absent
        return None
    if raw is None:
        return None
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace").strip()
    return str(raw).strip()


def to_records(devices: Iterable[UdevDeviceLike]) -> list[UdevRecord]:
    """Copy pyudev-like devices (and their parent chains, shared) into plain records."""
    cache: dict[str, UdevRecord] = {}

    def convert(device: UdevDeviceLike) -> UdevRecord:
        known = cache.get(device.sys_path)
        if known is not None:
            return known
        # pyudev devices are falsy when they have no properties: compare with None.
        parent_device = device.parent
        parent = convert(parent_device) if parent_device is not None else None
        properties = {str(k): str(v) for k, v in dict(device.properties).items()}
        attributes = {n: v for n in ATTRIBUTES if (v := _attribute(device, n)) is not None}
        record = UdevRecord(
            sys_path=device.sys_path,
            subsystem=device.subsystem,
            devtype=device.device_type,
            node=device.device_node,
            number=parse_number(properties, device.device_number, attributes.get("dev")),
            driver=device.driver or None,
            properties=properties,
            attributes=attributes,
            parent=parent,
        )
        cache[device.sys_path] = record
        return record

    return [convert(d) for d in devices]


def _enumerate_udev() -> Iterator[UdevDeviceLike]:
    # Imported here so that a host without pyudev/libudev still gets the other probes' facts.
    import pyudev

    context = pyudev.Context()
    for subsystem in SUBSYSTEMS:
        yield from context.list_devices(subsystem=subsystem)


def _char_node(path: str) -> DeviceNode | None:
    try:
        st = os.lstat(path)  # lstat: a symlink named nvidia0 is not the device
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return None
    return DeviceNode(node=path, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev))


def _char_nodes(paths: Iterable[str]) -> tuple[DeviceNode, ...]:
    found = (_char_node(p) for p in paths)
    return tuple(sorted((n for n in found if n is not None), key=lambda n: node_sort_key(n.node)))


def nvidia_nodes(dev_root: str) -> tuple[DeviceNode, ...]:
    """NVIDIA's character devices under dev_root; the proprietary driver often skips udev."""
    try:
        names = os.listdir(dev_root)
    except OSError:
        return ()
    return _char_nodes(os.path.join(dev_root, n) for n in names if _NVIDIA_NODE.fullmatch(n))


def nvidia_cap_nodes(dev_root: str) -> tuple[DeviceNode, ...]:
    """MIG capability nodes under dev_root/nvidia-caps (seen on a real H200 host: cap1, cap2)."""
    caps_dir = os.path.join(dev_root, _NVIDIA_CAPS_DIR)
    try:
        names = os.listdir(caps_dir)
    except OSError:  # most hosts have no nvidia-caps
        return ()
    return _char_nodes(os.path.join(caps_dir, n) for n in names)


def parse_nvidia_version(text: str) -> str | None:
    """The driver version from /proc/driver/nvidia/version (proprietary or open module)."""
    match = _NVIDIA_VERSION.search(text)
    return match.group(1) if match else None


def probe_nvidia(dev_root: str, version_file: str) -> NvidiaFacts:
    try:
        with open(version_file, encoding="utf-8", errors="replace") as f:
            version = parse_nvidia_version(f.read(4096))
    except OSError:
        version = None
    return NvidiaFacts(
        nodes=nvidia_nodes(dev_root), driver_version=version, caps=nvidia_cap_nodes(dev_root)
    )


def facts_from_records(
    records: Iterable[UdevRecord], nvidia: NvidiaFacts, udev_database: bool
) -> DeviceFacts:
    listed = list(records)
    return DeviceFacts(
        available=True,
        gpus=classify_gpus(listed),
        webcams=classify_webcams(listed),
        gamepads=classify_gamepads(listed),
        nvidia=nvidia,
        udev_properties=udev_database or has_udev_properties(listed),
    )


def probe(
    env: Mapping[str, str],
    *,
    dev_root: str | None = None,
    nvidia_version_file: str | None = None,
    enumerate_udev: Callable[[], Iterable[UdevDeviceLike]] | None = None,
) -> DeviceFacts:
    """Describe GPUs, NVIDIA nodes, webcams and gamepads; a missing udev is a fact, not an error.

    No /run/udev is not a reason to give up: under umockdev (and in some containers) libudev
    still enumerates devices, so only pyudev itself failing makes `available` False.
    """
    nvidia = probe_nvidia(
        dev_root or env.get(ENV_DEV_ROOT) or DEFAULT_DEV_ROOT,
        nvidia_version_file or env.get(ENV_NVIDIA_VERSION_FILE) or DEFAULT_NVIDIA_VERSION_FILE,
    )
    source = enumerate_udev if enumerate_udev is not None else _enumerate_udev
    try:
        records = to_records(source())
    except ImportError as exc:  # pyudev missing, or libudev.so not loadable
        return DeviceFacts(False, f"pyudev cannot load libudev: {exc}", nvidia=nvidia)
    except OSError as exc:
        return DeviceFacts(False, f"udev enumeration failed: {exc}", nvidia=nvidia)
    return facts_from_records(records, nvidia, os.path.isdir(UDEV_DATABASE_DIR))
