"""Hotplug provider: matching rules, the watcher thread with an injected source, node making."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from sandbox.errors import ProviderError
from sandbox.policy.plan import DeviceNode, HotplugCgroup, HotplugRequest, HotplugSubsystem
from sandbox.policy.vocabulary import Capability
from sandbox.providers.devices import (
    ContainerTarget,
    DeviceAction,
    DeviceEvent,
    HostContainerDevices,
    HotplugProvider,
    QueueEventSource,
    devices_cgroup_dir,
    matches,
)
from sandbox.providers.grant import ProviderContext

WEBCAM = HotplugRequest(Capability.WEBCAM, HotplugSubsystem.VIDEO4LINUX)
GAMEPAD = HotplugRequest(Capability.GAMEPAD, HotplugSubsystem.INPUT, (("ID_INPUT_JOYSTICK", "1"),))


def ev(
    node: str, major: int, minor: int, action: DeviceAction = DeviceAction.ADD, **props: str
) -> DeviceEvent:
    subsystem = "video4linux" if "video" in node else "input"
    return DeviceEvent(action, subsystem, node, major, minor, tuple(sorted(props.items())))


CAMERA = ev("/dev/video2", 81, 2, ID_V4L_CAPABILITIES=":capture:")
METADATA = ev("/dev/video3", 81, 3, ID_V4L_CAPABILITIES=":")
PAD = ev("/dev/input/event7", 13, 71, ID_INPUT="1", ID_INPUT_JOYSTICK="1")
PAD_JS = ev("/dev/input/js1", 13, 1, ID_INPUT="1", ID_INPUT_JOYSTICK="1")
KEYBOARD = ev("/dev/input/event8", 13, 72, ID_INPUT="1", ID_INPUT_KEYBOARD="1", ID_INPUT_KEY="1")
MOUSE = ev("/dev/input/event9", 13, 73, ID_INPUT="1", ID_INPUT_MOUSE="1")
KEYBOARD_WITH_JOYSTICK_FLAG = ev(
    "/dev/input/event10", 13, 74, ID_INPUT_JOYSTICK="1", ID_INPUT_KEYBOARD="1"
)
MOUSE_LEGACY = ev("/dev/input/mouse1", 13, 33, ID_INPUT_JOYSTICK="1")


@pytest.mark.parametrize(
    ("request_", "event", "expected"),
    [
        (WEBCAM, CAMERA, True),
        (WEBCAM, METADATA, False),
        (WEBCAM, PAD, False),
        (GAMEPAD, PAD, True),
        (GAMEPAD, PAD_JS, True),
        (GAMEPAD, KEYBOARD, False),
        (GAMEPAD, MOUSE, False),
        (GAMEPAD, KEYBOARD_WITH_JOYSTICK_FLAG, False),
        (GAMEPAD, MOUSE_LEGACY, False),
        (GAMEPAD, CAMERA, False),
        (GAMEPAD, ev("/dev/input/../event7", 13, 71, ID_INPUT_JOYSTICK="1"), False),
        (GAMEPAD, ev("/tmp/event7", 13, 71, ID_INPUT_JOYSTICK="1"), False),
    ],
)
def test_matches(request_: HotplugRequest, event: DeviceEvent, expected: bool) -> None:
    assert matches(request_, event) is expected


class RecordingDevices:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def allow(self, major: int, minor: int) -> None:
        self.calls.append(("allow", (major, minor)))

    def deny(self, major: int, minor: int) -> None:
        self.calls.append(("deny", (major, minor)))

    def create(self, node: str, major: int, minor: int) -> None:
        self.calls.append(("create", (node, major, minor)))

    def remove(self, node: str) -> None:
        self.calls.append(("remove", node))


def ctx(tmp_path: Path) -> ProviderContext:
    return ProviderContext("com.example.Game", tmp_path, 1000, 1000, "game", tmp_path)


def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def test_watcher_adds_matching_removes_unplugged_and_stops(tmp_path: Path) -> None:
    source = QueueEventSource()
    recorder = RecordingDevices()
    provider = HotplugProvider(
        GAMEPAD,
        present=(DeviceNode("/dev/input/event5", 13, 69, Capability.GAMEPAD),),
        source_factory=lambda _r: source,
        devices_factory=lambda _t, _g, _m: recorder,
    )
    assert provider.setup(ctx(tmp_path)).devices == ()
    provider.attach(ContainerTarget(pid=1))
    for event in (KEYBOARD, MOUSE, PAD, ev(PAD.node, 13, 71, DeviceAction.REMOVE)):
        source.put(event)
    source.put(ev("/dev/input/event5", 13, 69, DeviceAction.REMOVE))  # present at launch
    source.put(ev(KEYBOARD.node, 13, 72, DeviceAction.REMOVE))  # never added: ignored
    _until(lambda: ("remove", "/dev/input/event5") in recorder.calls)
    provider.teardown()
    provider.teardown()  # idempotent
    assert recorder.calls == [
        ("allow", (13, 71)),
        ("create", ("/dev/input/event7", 13, 71)),
        ("deny", (13, 71)),
        ("remove", "/dev/input/event7"),
        ("deny", (13, 69)),
        ("remove", "/dev/input/event5"),
    ]
    assert provider.added() == {}
    assert provider.errors == []


def test_failing_source_ends_hotplug_not_the_caller(tmp_path: Path) -> None:
    def broken(_timeout: float) -> DeviceEvent | None:
        raise OSError("netlink gone")

    provider = HotplugProvider(
        WEBCAM,
        source_factory=lambda _r: broken,
        devices_factory=lambda _t, _g, _m: RecordingDevices(),
    )
    provider.setup(ctx(tmp_path))
    provider.attach(ContainerTarget(pid=1))
    _until(lambda: provider.errors)
    provider.teardown()
    assert "netlink gone" in provider.errors[0]


def test_attach_reports_an_unavailable_udev_as_a_provider_error(tmp_path: Path) -> None:
    def no_netlink(_r: HotplugRequest) -> QueueEventSource:
        raise PermissionError(13, "Permission denied")

    provider = HotplugProvider(
        GAMEPAD, source_factory=no_netlink, devices_factory=lambda _t, _g, _m: RecordingDevices()
    )
    provider.setup(ctx(tmp_path))
    with pytest.raises(ProviderError, match=r"hotplug gamepad: cannot watch udev.*Permission"):
        provider.attach(ContainerTarget(pid=1))
    provider.teardown()  # nothing started: still safe


def test_attach_needs_setup() -> None:
    with pytest.raises(ProviderError):
        HotplugProvider(WEBCAM).attach(ContainerTarget(pid=1))


def test_devices_cgroup_dir(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "42").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(
        "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "35 25 0:31 / /sys/fs/cgroup/devices rw,nosuid - cgroup cgroup rw,devices\n"
    )
    (tmp_path / "42" / "cgroup").write_text(
        "5:devices:/sandbox/com.example.Game/abc\n0::/sandbox/com.example.Game/abc\n"
    )
    assert (
        devices_cgroup_dir(42, str(tmp_path))
        == "/sys/fs/cgroup/devices/sandbox/com.example.Game/abc"
    )
    (tmp_path / "self" / "mountinfo").write_text("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 c rw\n")
    assert devices_cgroup_dir(42, str(tmp_path)) is None


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod and chown need root")


def _fake_container(tmp_path: Path) -> tuple[Path, Path, Path]:
    proc = tmp_path / "proc"
    root = proc / "7" / "root"
    (root / "dev").mkdir(parents=True)
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    return proc, root, cgroup


@needs_root
def test_host_devices_make_and_remove_nodes(tmp_path: Path) -> None:
    proc, root, cgroup = _fake_container(tmp_path)
    devices = HostContainerDevices(
        ContainerTarget(7, str(cgroup)), 1234, HotplugCgroup.PER_NODE, proc=str(proc)
    )
    devices.allow(1, 3)
    assert (cgroup / "devices.allow").read_text() == "c 1:3 rw"
    devices.create("/dev/input/event7", 1, 3)
    st = os.lstat(root / "dev" / "input" / "event7")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, 1234)
    devices.create("/dev/input/event7", 1, 3)  # twice is fine
    devices.deny(1, 3)
    assert (cgroup / "devices.deny").read_text() == "c 1:3 rw"
    devices.remove("/dev/input/event7")
    assert not (root / "dev" / "input" / "event7").exists()
    devices.remove("/dev/input/event7")  # gone already: fine


@needs_root
def test_host_devices_never_follow_a_planted_symlink(tmp_path: Path) -> None:
    proc, root, _ = _fake_container(tmp_path)
    outside = tmp_path / "host-dir"
    outside.mkdir()
    (root / "dev" / "input").symlink_to(outside)
    devices = HostContainerDevices(
        ContainerTarget(7), 1234, HotplugCgroup.MAJOR_PREALLOWED, proc=str(proc)
    )
    with pytest.raises(ProviderError):
        devices.create("/dev/input/event7", 1, 3)
    assert list(outside.iterdir()) == []


def test_per_node_needs_a_devices_cgroup() -> None:
    with pytest.raises(ProviderError):
        HostContainerDevices(ContainerTarget(7), 1, HotplugCgroup.PER_NODE)
