"""The shared udev node rules: the probe's gamepad and webcam test and the hotplug match agree."""

from __future__ import annotations

import pytest

from sandbox.host.udev import UdevRecord, is_capture_node, is_gamepad_node, is_joystick_only

PAD = {"ID_INPUT_JOYSTICK": "1"}


@pytest.mark.parametrize(
    ("props", "joystick"),
    [
        (PAD, True),
        ({**PAD, "ID_INPUT_KEYBOARD": "1"}, False),
        ({**PAD, "ID_INPUT_MOUSE": "1"}, False),
        ({"ID_INPUT_KEYBOARD": "1"}, False),
        ({}, False),
    ],
)
def test_only_a_plain_joystick_is_one(props: dict[str, str], joystick: bool) -> None:
    assert is_joystick_only(props) is joystick
    record = UdevRecord(
        "/sys/x/event5", "input", node="/dev/input/event5", number=(13, 69), properties=props
    )
    assert is_gamepad_node(record) is joystick


def test_a_node_without_a_number_is_never_granted() -> None:
    caps = {"ID_V4L_CAPABILITIES": ":capture:"}
    with_number = UdevRecord(
        "/sys/v", "video4linux", node="/dev/video0", number=(81, 0), properties=caps
    )
    assert with_number.has_node and is_capture_node(with_number)
    without = UdevRecord("/sys/v", "video4linux", node="/dev/video0", properties=caps)
    assert not without.has_node and not is_capture_node(without)
    assert not is_gamepad_node(
        UdevRecord("/sys/e", "input", node="/dev/input/event1", properties=PAD)
    )
