"""Unit tests of the devices probe: classification rules on fake pyudev-like devices."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.host.udev import UdevRecord, node_sort_key, parse_number
from sandbox.policy.facts import DeviceNode, NvidiaFacts
from sandbox.probes import devices
from sandbox.probes.device_classify import classify_gamepads, classify_gpus, classify_webcams


class FakeAttributes:
    """pyudev.Attributes: get() returns bytes, or raises for an unreadable file."""

    def __init__(self, values: Mapping[str, str], broken: frozenset[str] = frozenset()) -> None:
        self._values = values
        self._broken = broken

    def get(self, name: str) -> bytes | None:
        if name in self._broken:
            raise OSError(13, "Permission denied")
        value = self._values.get(name)
        return None if value is None else value.encode()


class FakeDevice:
    """Just enough of pyudev.Device; falsy when it has no properties, as pyudev's is."""

    def __init__(
        self,
        sys_path: str,
        subsystem: str | None = None,
        *,
        devtype: str | None = None,
        node: str | None = None,
        number: int = 0,
        driver: str | None = None,
        properties: Mapping[str, str] | None = None,
        attributes: Mapping[str, str] | None = None,
        broken: frozenset[str] = frozenset(),
        parent: FakeDevice | None = None,
    ) -> None:
        self.sys_path = "/sys" + sys_path
        self.subsystem = subsystem
        self.device_type = devtype
        self.device_node = node
        self.device_number = number
        self.driver = driver
        self.properties = dict(properties or {})
        self.attributes = FakeAttributes(attributes or {}, broken)
        self.parent = parent

    def __len__(self) -> int:
        return len(self.properties)


def _node(name: str, major: int, minor: int, **props: str) -> dict[str, str]:
    return {"DEVNAME": name, "MAJOR": str(major), "MINOR": str(minor), **props}


def _pci(slot: str, driver: str | None, vendor: str | None) -> FakeDevice:
    return FakeDevice(
        f"/devices/pci0000:00/{slot}",
        "pci",
        driver=driver,
        properties={"PCI_SLOT_NAME": slot},
        attributes={"vendor": vendor} if vendor else {},
    )


def _drm(parent: FakeDevice, name: str, major: int, minor: int) -> FakeDevice:
    return FakeDevice(
        parent.sys_path.removeprefix("/sys") + f"/drm/{name}",
        "drm",
        devtype="drm_minor",
        node=f"/dev/dri/{name}",
        properties=_node(f"/dev/dri/{name}", major, minor, DEVTYPE="drm_minor"),
        parent=parent,
    )


def _input_parent(path: str, name: str, **props: str) -> FakeDevice:
    # A parent input device with only a sysfs name has no properties: pyudev makes it falsy.
    return FakeDevice(path, "input", properties=props, attributes={"name": name})


def _input(parent: FakeDevice, name: str, major: int, minor: int, **props: str) -> FakeDevice:
    return FakeDevice(
        parent.sys_path.removeprefix("/sys") + f"/{name}",
        "input",
        node=f"/dev/input/{name}",
        properties=_node(f"/dev/input/{name}", major, minor, **props),
        parent=parent,
    )


def _webcam_tree(usb: str = "1-1") -> list[FakeDevice]:
    device = FakeDevice(f"/devices/pci0000:00/0000:00:14.0/usb1/{usb}", "usb", devtype="usb_device")
    iface = FakeDevice(
        device.sys_path.removeprefix("/sys") + f"/{usb}:1.0",
        "usb",
        devtype="usb_interface",
        driver="uvcvideo",
        parent=device,
    )
    base = iface.sys_path.removeprefix("/sys")
    n = int(usb.split("-")[1]) - 1

    def v4l(index: int, caps: str, **extra: str) -> FakeDevice:
        name = f"video{2 * n + index}"
        return FakeDevice(
            f"{base}/video4linux/{name}",
            "video4linux",
            node=f"/dev/{name}",
            properties=_node(f"/dev/{name}", 81, 2 * n + index, ID_V4L_CAPABILITIES=caps, **extra),
            attributes={"name": f"Cam {usb}"},
            parent=iface,
        )

    media = FakeDevice(
        f"{base}/media{n}",
        "media",
        node=f"/dev/media{n}",
        properties=_node(f"/dev/media{n}", 237, n),
        parent=iface,
    )
    return [v4l(0, ":capture:", ID_V4L_PRODUCT="Test Webcam"), v4l(1, ":"), media]


def _records(*devs: FakeDevice) -> list[UdevRecord]:
    return devices.to_records(devs)


# --- GPUs ---------------------------------------------------------------------------------


def test_render_node_is_the_gpu_and_card_of_same_parent_rides_along() -> None:
    intel = _pci("0000:00:02.0", "i915", "0x8086")
    nvidia = _pci("0000:01:00.0", None, "0x10DE")
    nvidia.properties["DRIVER"] = "nvidia"  # no `driver` link: the property still names it
    recs = _records(
        _drm(intel, "card0", 226, 0),
        _drm(intel, "renderD128", 226, 128),
        _drm(nvidia, "renderD129", 226, 129),
        _drm(nvidia, "card1", 226, 1),
    )
    gpus = classify_gpus(recs)
    assert [(g.node, g.major, g.minor) for g in gpus] == [
        ("/dev/dri/renderD128", 226, 128),
        ("/dev/dri/renderD129", 226, 129),
    ]
    assert gpus[0].card == DeviceNode("/dev/dri/card0", 226, 0)
    assert (gpus[0].driver, gpus[0].vendor_id, gpus[0].vendor) == ("i915", "0x8086", "Intel")
    assert gpus[0].pci_slot == "0000:00:02.0"
    assert gpus[1].card == DeviceNode("/dev/dri/card1", 226, 1)
    assert (gpus[1].driver, gpus[1].vendor_id, gpus[1].vendor) == ("nvidia", "0x10de", "NVIDIA")


def test_card_without_render_node_and_connectors_are_not_gpus() -> None:
    old = _pci("0000:00:03.0", "simpledrm", None)
    connector = FakeDevice(
        old.sys_path.removeprefix("/sys") + "/drm/card0/card0-HDMI-A-1",
        "drm",
        devtype="drm_connector",
        parent=old,
    )
    assert classify_gpus(_records(_drm(old, "card0", 226, 0), connector)) == ()


def test_unknown_vendor_and_vendor_from_pci_id() -> None:
    amd = _pci("0000:03:00.0", "amdgpu", None)
    amd.properties["PCI_ID"] = "1002:73BF"
    odd = _pci("0000:04:00.0", "vendorx", "0x1234")
    gpus = classify_gpus(
        _records(_drm(amd, "renderD128", 226, 128), _drm(odd, "renderD129", 226, 129))
    )
    assert [(g.vendor_id, g.vendor) for g in gpus] == [("0x1002", "AMD"), ("0x1234", None)]


def test_render_node_without_parent_still_reported() -> None:
    vgem = FakeDevice(
        "/devices/virtual/drm/renderD130",
        "drm",
        devtype="drm_minor",
        node="/dev/dri/renderD130",
        properties=_node("/dev/dri/renderD130", 226, 130),
    )
    (gpu,) = classify_gpus(_records(vgem))
    assert (gpu.node, gpu.card, gpu.driver, gpu.vendor, gpu.pci_slot) == (
        "/dev/dri/renderD130",
        None,
        None,
        None,
        None,
    )


# --- webcams ------------------------------------------------------------------------------


def test_capture_node_with_media_node_metadata_node_excluded() -> None:
    (cam,) = classify_webcams(_records(*_webcam_tree()))
    assert (cam.node, cam.major, cam.minor, cam.product) == ("/dev/video0", 81, 0, "Test Webcam")
    assert cam.media == DeviceNode("/dev/media0", 237, 0)


def test_two_cameras_each_get_their_own_media_node_in_natural_order() -> None:
    cams = classify_webcams(_records(*_webcam_tree("1-6"), *_webcam_tree("1-1")))
    assert [(c.node, c.media.node if c.media else None) for c in cams] == [
        ("/dev/video0", "/dev/media0"),
        ("/dev/video10", "/dev/media5"),
    ]


def test_product_falls_back_to_name_attribute_and_no_capabilities_means_no_webcam() -> None:
    capture, meta, _media = _webcam_tree()
    del capture.properties["ID_V4L_PRODUCT"]
    (cam,) = classify_webcams(_records(capture, meta))
    assert (cam.product, cam.media) == ("Cam 1-1", None)
    del capture.properties["ID_V4L_CAPABILITIES"]  # no udevd: the kernel alone cannot tell
    assert classify_webcams(_records(capture)) == ()


# --- gamepads -----------------------------------------------------------------------------


def _input_tree() -> list[FakeDevice]:
    kbd = _input_parent("/devices/platform/i8042/serio0/input/input0", "AT keyboard")
    mouse = _input_parent("/devices/platform/i8042/serio1/input/input1", "Test Mouse")
    pad = _input_parent(
        "/devices/usb/1-2/input/input2", "sysfs name", NAME='"Test Gamepad"', ID_INPUT="1"
    )
    return [
        _input(kbd, "event0", 13, 64, ID_INPUT_KEYBOARD="1"),
        _input(mouse, "event1", 13, 65, ID_INPUT_MOUSE="1"),
        _input(mouse, "mouse0", 13, 32, ID_INPUT_MOUSE="1"),
        _input(pad, "event2", 13, 66, ID_INPUT_JOYSTICK="1", ID_INPUT_KEY="1"),
        _input(pad, "js0", 13, 0, ID_INPUT_JOYSTICK="1"),
        pad,
        kbd,
        mouse,
    ]


def test_gamepad_event_node_with_js_and_unquoted_name_no_keyboard_or_mouse() -> None:
    (pad,) = classify_gamepads(_records(*_input_tree()))
    assert (pad.node, pad.major, pad.minor, pad.name) == (
        "/dev/input/event2",
        13,
        66,
        "Test Gamepad",
    )
    assert pad.js == (DeviceNode("/dev/input/js0", 13, 0),)


def test_name_from_sysfs_attribute_of_falsy_parent() -> None:
    parent = _input_parent("/devices/usb/1-3/input/input9", "Pad From Sysfs")
    assert not parent  # pyudev semantics: no properties, so falsy; the probe must not care
    (pad,) = classify_gamepads(_records(_input(parent, "event9", 13, 73, ID_INPUT_JOYSTICK="1")))
    assert pad.name == "Pad From Sysfs"
    assert pad.js == ()


@pytest.mark.parametrize(
    "props",
    [
        {"ID_INPUT_JOYSTICK": "1", "ID_INPUT_KEYBOARD": "1"},
        {"ID_INPUT_JOYSTICK": "1", "ID_INPUT_MOUSE": "1"},
        {"ID_INPUT_JOYSTICK": "0"},
        {"ID_INPUT_KEY": "1"},
        {},
    ],
)
def test_only_pure_joystick_event_nodes_are_gamepads(props: dict[str, str]) -> None:
    parent = _input_parent("/devices/usb/1-4/input/input7", "Thing")
    node = _input(parent, "event7", 13, 71, **props)
    js = _input(parent, "js1", 13, 1, ID_INPUT_JOYSTICK="1")
    assert classify_gamepads(_records(node, js)) == ()


# --- numbers, ordering, conversion --------------------------------------------------------


def test_parse_number_sources_in_order() -> None:
    assert parse_number({"MAJOR": "226", "MINOR": "128"}, os.makedev(1, 2), "3:4") == (226, 128)
    assert parse_number({}, os.makedev(13, 300), "3:4") == (13, 300)
    assert parse_number({}, 0, "81:0\n") == (81, 0)
    assert parse_number({"MAJOR": "x", "MINOR": "1"}, 0, "garbage") is None


def test_number_from_device_number_when_properties_lack_it() -> None:
    dev = FakeDevice(
        "/devices/virtual/drm/renderD131",
        "drm",
        devtype="drm_minor",
        node="/dev/dri/renderD131",
        number=os.makedev(226, 131),
    )
    (gpu,) = classify_gpus(_records(dev))
    assert (gpu.major, gpu.minor) == (226, 131)


def test_unreadable_attribute_is_absent_and_parents_are_shared() -> None:
    pci = _pci("0000:00:02.0", "i915", "0x8086")
    pci.attributes = FakeAttributes({"vendor": "0x8086"}, broken=frozenset({"vendor"}))
    recs = _records(_drm(pci, "card0", 226, 0), _drm(pci, "renderD128", 226, 128))
    assert recs[0].parent is recs[1].parent
    assert classify_gpus(recs)[0].vendor_id is None


def test_node_sort_key_is_natural() -> None:
    nodes = ["/dev/video10", "/dev/video2", "/dev/media0", "/dev/video1"]
    assert sorted(nodes, key=node_sort_key) == [
        "/dev/media0",
        "/dev/video1",
        "/dev/video2",
        "/dev/video10",
    ]


@given(st.permutations(list(range(14))))
def test_result_does_not_depend_on_enumeration_order(order: list[int]) -> None:
    intel = _pci("0000:00:02.0", "i915", "0x8086")
    devs = [
        _drm(intel, "card0", 226, 0),
        _drm(intel, "renderD128", 226, 128),
        *_webcam_tree(),
        *_input_tree(),
        *_webcam_tree("1-3")[:1],
    ]
    assert len(devs) == len(order)
    expected = devices.facts_from_records(_records(*devs), NvidiaFacts(), False)
    shuffled = devices.facts_from_records(_records(*(devs[i] for i in order)), NvidiaFacts(), False)
    assert shuffled == expected


# --- NVIDIA and the probe entry point -----------------------------------------------------


def _mknod(path: Path, major: int, minor: int) -> None:
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")


def test_nvidia_nodes_are_char_devices_under_dev_root(tmp_path: Path) -> None:
    _mknod(tmp_path / "nvidia0", 195, 0)
    _mknod(tmp_path / "nvidia10", 195, 10)
    _mknod(tmp_path / "nvidiactl", 195, 255)
    _mknod(tmp_path / "nvidia-uvm", 508, 0)
    (tmp_path / "nvidia-caps").mkdir()
    _mknod(tmp_path / "nvidia-caps" / "nvidia-cap1", 511, 1)
    (tmp_path / "nvidia1").write_text("a regular file is not a device")
    (tmp_path / "nvidia2").symlink_to(tmp_path / "nvidia0")
    _mknod(tmp_path / "nvidia-foo", 195, 77)  # not a name the driver makes
    found = devices.nvidia_nodes(str(tmp_path))
    assert list(found) == sorted(found, key=lambda n: node_sort_key(n.node))
    assert {(n.node.removeprefix(str(tmp_path)), n.major, n.minor) for n in found} == {
        ("/nvidia-uvm", 508, 0),
        ("/nvidia0", 195, 0),
        ("/nvidia10", 195, 10),
        ("/nvidiactl", 195, 255),
    }


def test_nvidia_mig_capability_nodes_are_reported_apart(tmp_path: Path) -> None:
    # Seen on a real H200 host: nvidia-cap1 (MIG config, an admin right) and nvidia-cap2.
    _mknod(tmp_path / "nvidia0", 195, 0)
    (tmp_path / "nvidia-caps").mkdir()
    _mknod(tmp_path / "nvidia-caps" / "nvidia-cap1", 241, 1)
    _mknod(tmp_path / "nvidia-caps" / "nvidia-cap2", 241, 2)
    facts = devices.probe_nvidia(str(tmp_path), str(tmp_path / "no-version"))
    assert [n.node.removeprefix(str(tmp_path)) for n in facts.nodes] == ["/nvidia0"]
    assert [(n.node.removeprefix(str(tmp_path)), n.minor) for n in facts.caps] == [
        ("/nvidia-caps/nvidia-cap1", 1),
        ("/nvidia-caps/nvidia-cap2", 2),
    ]


def test_nvidia_missing_dev_root_is_empty(tmp_path: Path) -> None:
    assert devices.nvidia_nodes(str(tmp_path / "absent")) == ()


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.154.05  Thu Dec 28 2023\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
            "535.154.05",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build\n",
            "550.54.14",
        ),
        ("something else\n", None),
    ],
)
def test_parse_nvidia_version(text: str, version: str | None) -> None:
    assert devices.parse_nvidia_version(text) == version


def test_probe_reads_overrides_from_env(tmp_path: Path) -> None:
    _mknod(tmp_path / "nvidiactl", 195, 255)
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.1  x\n")
    env = {devices.ENV_DEV_ROOT: str(tmp_path), devices.ENV_NVIDIA_VERSION_FILE: str(version)}
    facts = devices.probe(env, enumerate_udev=lambda: iter(()))
    assert facts.available
    assert facts.nvidia.driver_version == "535.1"
    assert [n.node for n in facts.nvidia.nodes] == [str(tmp_path / "nvidiactl")]


def test_pyudev_failing_is_a_fact_and_nvidia_still_reported(tmp_path: Path) -> None:
    _mknod(tmp_path / "nvidia0", 195, 0)

    def broken() -> Iterator[FakeDevice]:
        raise ImportError("libudev.so.1: cannot open shared object file")

    facts = devices.probe({}, dev_root=str(tmp_path), enumerate_udev=broken)
    assert not facts.available
    assert facts.reason is not None and "libudev" in facts.reason
    assert [n.minor for n in facts.nvidia.nodes] == [0]
    assert (facts.gpus, facts.webcams, facts.gamepads) == ((), (), ())


def test_udev_properties_flag_tells_whether_udevd_data_was_seen() -> None:
    kernel_only = _input_tree()
    for dev in kernel_only:  # what sysfs alone gives without udevd: no ID_* properties
        dev.properties = {k: v for k, v in dev.properties.items() if not k.startswith("ID_")}
    bare = _records(*kernel_only)
    nv = NvidiaFacts()
    assert not devices.facts_from_records(bare, nv, udev_database=False).udev_properties
    assert devices.facts_from_records(bare, nv, udev_database=True).udev_properties
    assert devices.facts_from_records(_records(*_input_tree()), nv, False).udev_properties
