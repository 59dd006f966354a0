"""udev device records and the node rules the devices probe and hotplug share; pure, no udev I/O."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_EVENT = re.compile(r"event\d+")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True, eq=False)
class UdevRecord:
    """One udev device as plain data: what the rules need, read once from pyudev (or a fake)."""

    sys_path: str
    subsystem: str | None = None
    devtype: str | None = None
    node: str | None = None  # "/dev/dri/renderD128"
    number: tuple[int, int] | None = None  # (major, minor)
    driver: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)  # only the few the rules read
    parent: UdevRecord | None = None

    @property
    def sys_name(self) -> str:
        return self.sys_path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def node_name(self) -> str:
        """The basename of the /dev node, which names the minor kind (renderD*, event*, js*)."""
        return (self.node or "").rsplit("/", 1)[-1]

    @property
    def has_node(self) -> bool:
        """Whether it has a /dev node with a known number, the only kind a grant can carry."""
        return self.node is not None and self.number is not None


def node_sort_key(node: str) -> tuple[object, ...]:
    """Natural order, so that /dev/video2 sorts before /dev/video10."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(node))


def parse_number(
    properties: Mapping[str, str], device_number: int | None, dev_attribute: str | None
) -> tuple[int, int] | None:
    """Major and minor from MAJOR/MINOR, else the dev_t, else the sysfs `dev` attribute."""
    major, minor = properties.get("MAJOR"), properties.get("MINOR")
    if major is not None and minor is not None and major.isdigit() and minor.isdigit():
        return int(major), int(minor)
    if device_number:
        return os.major(device_number), os.minor(device_number)
    if dev_attribute is not None:
        parts = dev_attribute.strip().split(":")
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            return int(parts[0]), int(parts[1])
    return None


def is_capture_node(record: UdevRecord) -> bool:
    """A V4L node that captures video; metadata-only and output-only nodes lack ':capture:'."""
    return (
        record.subsystem == "video4linux"
        and ":capture:" in record.properties.get("ID_V4L_CAPABILITIES", "")
        and record.has_node
    )


def is_joystick_only(properties: Mapping[str, str]) -> bool:
    """udev calls it a joystick and NOT a keyboard or mouse.

    `gamepad` is a low-risk capability; a node that also reports as a keyboard (some keyboards
    carry a stray joystick flag) would let the app read everything typed, and a mouse node
    everything pointed at, so such nodes are never gamepads whatever else they claim.
    """
    return (
        properties.get("ID_INPUT_JOYSTICK") == "1"
        and properties.get("ID_INPUT_KEYBOARD") != "1"
        and properties.get("ID_INPUT_MOUSE") != "1"
    )


def is_gamepad_node(record: UdevRecord) -> bool:
    """An evdev node of a joystick that is neither a keyboard nor a mouse (is_joystick_only)."""
    return (
        record.subsystem == "input"
        and _EVENT.fullmatch(record.node_name) is not None
        and is_joystick_only(record.properties)
        and record.has_node
    )
