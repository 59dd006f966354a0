"""Classify udev records into GPU, webcam and gamepad facts; pure rules, no udev or file I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from sandbox.host.udev import UdevRecord, is_capture_node, is_gamepad_node, node_sort_key
from sandbox.policy.facts import DeviceNode, Gamepad, GpuDevice, Webcam

PCI_VENDORS: Mapping[str, str] = {"0x8086": "Intel", "0x1002": "AMD", "0x10de": "NVIDIA"}

_RENDER = re.compile(r"renderD\d+")
_CARD = re.compile(r"card\d+")
_JS = re.compile(r"js\d+")

_Found = TypeVar("_Found", GpuDevice, Webcam, Gamepad)

# The kernel never sends these in a uevent: only udevd's rules and builtins add them.
_UDEV_ONLY_PREFIXES = ("ID_", "USEC_INITIALIZED", "DEVLINKS", "TAGS", "CURRENT_TAGS")


def _device_node(record: UdevRecord) -> DeviceNode | None:
    """The record's /dev node as a fact; None without a node or a known number."""
    if record.node is None or record.number is None:
        return None
    return DeviceNode(node=record.node, major=record.number[0], minor=record.number[1])


def has_udev_properties(records: Iterable[UdevRecord]) -> bool:
    """Whether any record carries a property only udevd adds (ID_*, USEC_INITIALIZED, ...)."""
    return any(key.startswith(_UDEV_ONLY_PREFIXES) for r in records for key in r.properties)


def _unquote(value: str) -> str:
    # The kernel quotes an input device's NAME in its uevent: NAME="Test Gamepad".
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _sorted_by_node(items: Iterable[_Found]) -> tuple[_Found, ...]:
    return tuple(sorted(items, key=lambda item: node_sort_key(item.node)))


def _nodes(records: Iterable[UdevRecord]) -> tuple[DeviceNode, ...]:
    found = (_device_node(r) for r in records)
    return tuple(sorted((n for n in found if n is not None), key=lambda n: node_sort_key(n.node)))


# --- GPUs ---------------------------------------------------------------------------------


def _drm_minor(record: UdevRecord, pattern: re.Pattern[str]) -> bool:
    return (
        record.subsystem == "drm"
        and record.devtype == "drm_minor"
        and pattern.fullmatch(record.node_name) is not None
        and _device_node(record) is not None
    )


def _gpu_parent(record: UdevRecord) -> UdevRecord | None:
    """The device behind a DRM minor: its first ancestor outside the drm subsystem."""
    parent = record.parent
    while parent is not None and parent.subsystem == "drm":
        parent = parent.parent
    return parent


def _vendor_id(parent: UdevRecord) -> str | None:
    raw = parent.attributes.get("vendor")
    if raw is None:
        pci_id = parent.properties.get("PCI_ID")  # "8086:9A49"
        raw = f"0x{pci_id.split(':', 1)[0]}" if pci_id and ":" in pci_id else None
    return raw.strip().lower() if raw else None


def classify_gpus(records: Iterable[UdevRecord]) -> tuple[GpuDevice, ...]:
    """One GpuDevice per render node; the card node of the same parent device rides along."""
    drm = [r for r in records if r.subsystem == "drm"]
    cards: dict[str, list[UdevRecord]] = {}
    for r in drm:
        parent = _gpu_parent(r)
        if parent is not None and _drm_minor(r, _CARD):
            cards.setdefault(parent.sys_path, []).append(r)
    gpus = []
    for r in drm:
        if not _drm_minor(r, _RENDER):
            continue
        node = _device_node(r)
        assert node is not None  # _drm_minor checked it
        parent = _gpu_parent(r)
        card: DeviceNode | None = None
        driver = r.properties.get("DRIVER")
        vendor_id = pci_slot = None
        if parent is not None:
            card_nodes = _nodes(cards.get(parent.sys_path, ()))
            card = card_nodes[0] if card_nodes else None
            driver = parent.driver or parent.properties.get("DRIVER") or driver
            vendor_id = _vendor_id(parent)
            if parent.subsystem == "pci":
                pci_slot = parent.properties.get("PCI_SLOT_NAME") or parent.sys_name
        gpus.append(
            GpuDevice(
                node=node.node,
                major=node.major,
                minor=node.minor,
                card=card,
                driver=driver,
                vendor_id=vendor_id,
                vendor=PCI_VENDORS.get(vendor_id or ""),
                pci_slot=pci_slot,
            )
        )
    return _sorted_by_node(gpus)


# --- webcams ------------------------------------------------------------------------------


def _physical_anchor(record: UdevRecord) -> str | None:
    """The USB interface (else USB device, else direct parent) a V4L or media node hangs off."""
    usb_device: str | None = None
    ancestor = record.parent
    while ancestor is not None:
        if ancestor.subsystem == "usb" and ancestor.devtype == "usb_interface":
            return ancestor.sys_path
        if ancestor.subsystem == "usb" and ancestor.devtype == "usb_device" and usb_device is None:
            usb_device = ancestor.sys_path
        ancestor = ancestor.parent
    if usb_device is not None:
        return usb_device
    return record.parent.sys_path if record.parent is not None else None


def classify_webcams(records: Iterable[UdevRecord]) -> tuple[Webcam, ...]:
    listed = list(records)
    media: dict[str, list[UdevRecord]] = {}
    for r in listed:
        anchor = _physical_anchor(r)
        if r.subsystem == "media" and anchor is not None and _device_node(r) is not None:
            media.setdefault(anchor, []).append(r)
    cams = []
    for r in listed:
        if not is_capture_node(r):
            continue
        node = _device_node(r)
        assert node is not None
        anchor = _physical_anchor(r)
        media_nodes = _nodes(media.get(anchor, ())) if anchor is not None else ()
        product = r.properties.get("ID_V4L_PRODUCT") or r.attributes.get("name") or None
        cams.append(
            Webcam(
                node=node.node,
                major=node.major,
                minor=node.minor,
                product=product,
                media=media_nodes[0] if media_nodes else None,
            )
        )
    return _sorted_by_node(cams)


# --- gamepads -----------------------------------------------------------------------------


def _input_name(device: UdevRecord | None) -> str | None:
    if device is None:
        return None
    name = device.properties.get("NAME") or device.attributes.get("name")
    if not name:
        return None
    return _unquote(name.strip()) or None


def classify_gamepads(records: Iterable[UdevRecord]) -> tuple[Gamepad, ...]:
    listed = list(records)
    js: dict[str, list[UdevRecord]] = {}
    for r in listed:
        if r.subsystem == "input" and _JS.fullmatch(r.node_name) and r.parent is not None:
            js.setdefault(r.parent.sys_path, []).append(r)
    pads = []
    for r in listed:
        if not is_gamepad_node(r):
            continue
        node = _device_node(r)
        assert node is not None
        parent_path = r.parent.sys_path if r.parent is not None else None
        pads.append(
            Gamepad(
                node=node.node,
                major=node.major,
                minor=node.minor,
                name=_input_name(r.parent),
                js=_nodes(js.get(parent_path, ())) if parent_path is not None else (),
            )
        )
    return _sorted_by_node(pads)
