"""Integration: device grants and hotplug in real containers (cgroup v1 devices), real engine."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from integration.components import missing, wait_until
from integration.containers import APP_UID, open_errno_in
from sandbox.config.catalog import load_catalog
from sandbox.engine.adapter import DockerAdapter
from sandbox.policy import engine
from sandbox.policy.facts import (
    AudioFacts,
    CgroupDriver,
    CgroupFacts,
    CgroupLayout,
    DeviceFacts,
    DockerFacts,
    HostFacts,
    UserFacts,
    WaylandFacts,
    Webcam,
    X11Facts,
)
from sandbox.policy.layers import BUILTIN_DEFAULTS, SitePolicy, merge
from sandbox.policy.manifest import AppInfo, Capabilities, Manifest
from sandbox.policy.plan import HotplugCgroup, HotplugRequest, LaunchPlan
from sandbox.providers.devices import (
    ContainerTarget,
    DeviceAction,
    DeviceEvent,
    HotplugProvider,
    QueueEventSource,
    devices_cgroup_dir,
)
from sandbox.providers.grant import Grant, ProviderContext
from sandbox.runtime.compile import LaunchTarget, compile
from sandbox.runtime.container_body import create_body

pytestmark = pytest.mark.integration

# A harmless real device: /dev/kmsg (1:11) is not in Docker's default allow list (so the
# granted rule shows up in devices.list) and opening it write-only needs no capability.
KMSG = (1, 11)
OTHER = (10, 183)  # hwrng; never granted here (EPERM comes from the cgroup before any driver)
VIDEO_GID = 44
DEVICES_ROOT = Path("/sys/fs/cgroup/devices")


def _need_v1_devices() -> None:
    if os.geteuid() != 0:
        missing("device tests need root (mknod, cgroup writes)")
    if not (DEVICES_ROOT / "devices.list").exists():
        missing("no cgroup v1 devices hierarchy: docker enforces devices with BPF here")


@pytest.fixture
def fake_webcam() -> Iterator[str]:
    """A host char device named like a webcam node, under a scratch dir of /dev."""
    _need_v1_devices()
    scratch = Path("/dev") / f"sbx-test-{secrets.token_hex(4)}"
    scratch.mkdir()
    node = scratch / "video0"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(*KMSG))
    os.chmod(node, 0o666)
    try:
        yield str(node)
    finally:
        shutil.rmtree(scratch)


def _facts(webcams: tuple[Webcam, ...]) -> HostFacts:
    return HostFacts(
        docker=DockerFacts(True, cgroup_driver=CgroupDriver.CGROUPFS, cgroup_version=1),
        x11=X11Facts(False, "unused"),
        wayland=WaylandFacts(False, "unused"),
        audio=AudioFacts(False, "unused"),
        devices=DeviceFacts(True, webcams=webcams, udev_properties=True),
        cgroups=CgroupFacts(True, layout=CgroupLayout.HYBRID),
        user=UserFacts(True, uid=APP_UID, gid=APP_UID, group_ids=(("video", VIDEO_GID),)),
    )


def _plan(app_id: str, webcam: bool, facts: HostFacts) -> LaunchPlan:
    manifest = Manifest(
        app=AppInfo(id=app_id, name="Device test", version="1.0", command=("sleep", "120")),
        capabilities=Capabilities(webcam=webcam),
    )
    catalog = load_catalog()
    policy = merge(BUILTIN_DEFAULTS, manifest, SitePolicy(), None, catalog=catalog)
    return engine.plan(policy, facts, catalog=catalog)


@dataclasses.dataclass
class Running:
    cid: str
    pid: int
    devices_dir: Path


@pytest.fixture
def run_plan(docker_client_url: str, tools_image: str) -> Iterator[Callable[[LaunchPlan], Running]]:
    adapter = DockerAdapter.from_env(docker_client_url)
    started: list[tuple[str, LaunchPlan]] = []

    def run(plan: LaunchPlan) -> Running:
        spec = compile(plan, Grant(), LaunchTarget(tools_image, "test:0", "/nonexistent"))
        cid = adapter.create(create_body(spec), name=spec.name)
        started.append((cid, plan))
        adapter.start(cid)
        info = adapter.inspect(cid)
        assert info is not None and info.pid > 0
        found = devices_cgroup_dir(info.pid)
        assert found is not None
        return Running(cid, info.pid, Path(found))

    yield run
    for cid, plan in started:
        adapter.remove(cid)
        parent = plan.cgroup_parent.path.lstrip("/")
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            for d in (hierarchy / parent, hierarchy / parent.rsplit("/", 1)[0]):
                with contextlib.suppress(OSError):  # busy or absent; docker never removes them
                    d.rmdir()
    adapter.close()


def _app_id() -> str:
    return f"org.sandboxtest.Dev{secrets.token_hex(3)}"


def _rules(running: Running) -> set[str]:
    return set((running.devices_dir / "devices.list").read_text().split("\n")) - {""}


def _open_in(cid: str, node: str) -> int:
    """errno of a write-only open inside the container as the app's user (0 = it opened)."""
    return open_errno_in(cid, node, f"{APP_UID}:{APP_UID}")


def _mknod_in(pid: int, node: str, number: tuple[int, int]) -> None:
    path = Path(f"/proc/{pid}/root{node}")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(*number))
    os.chmod(path, 0o666)


def test_granted_node_opens_others_do_not_and_cgroup_shows_exactly_the_grant(
    fake_webcam: str, run_plan: Callable[[LaunchPlan], Running]
) -> None:
    cam = Webcam(fake_webcam, *KMSG, product="Fake camera")
    facts = _facts((cam,))
    granted_plan = _plan(_app_id(), True, facts)
    assert [(d.path, d.major, d.minor) for d in granted_plan.devices] == [(fake_webcam, *KMSG)]
    assert granted_plan.device_cgroup_rules == ()  # v1: exact per-node rules, no major blanket
    baseline = run_plan(_plan(_app_id(), False, facts))
    granted = run_plan(granted_plan)

    assert _rules(granted) - _rules(baseline) == {f"c {KMSG[0]}:{KMSG[1]} rw"}
    assert _rules(baseline) - _rules(granted) == set()
    assert _open_in(granted.cid, fake_webcam) == 0
    # a node of a device that is not granted exists inside, yet the cgroup refuses it
    _mknod_in(granted.pid, "/dev/video9", OTHER)
    assert _open_in(granted.cid, "/dev/video9") == errno.EPERM
    _mknod_in(baseline.pid, "/dev/video0", KMSG)
    assert _open_in(baseline.cid, "/dev/video0") == errno.EPERM
    groups = subprocess.run(
        ["docker", "exec", granted.cid, "id", "-G"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert str(VIDEO_GID) in groups


def test_hotplug_adds_matching_and_takes_it_away(
    run_plan: Callable[[LaunchPlan], Running], tmp_path: Path
) -> None:
    _need_v1_devices()
    plan = _plan(_app_id(), True, _facts(()))  # none plugged in at launch
    (request,) = [r for r in plan.requests if isinstance(r, HotplugRequest)]
    assert request.cgroup is HotplugCgroup.PER_NODE
    running = run_plan(plan)
    before = _rules(running)
    source = QueueEventSource()
    provider = HotplugProvider(request, source_factory=lambda _r: source)
    provider.setup(ProviderContext("x.y.Z", tmp_path, APP_UID, APP_UID, "z", tmp_path))
    provider.attach(ContainerTarget(running.pid, str(running.devices_dir)))
    try:
        camera = DeviceEvent(
            DeviceAction.ADD,
            "video4linux",
            "/dev/video4",
            *KMSG,
            (("ID_V4L_CAPABILITIES", ":capture:"),),
        )
        metadata = DeviceEvent(
            DeviceAction.ADD,
            "video4linux",
            "/dev/video5",
            *OTHER,
            (("ID_V4L_CAPABILITIES", ":"),),
        )
        keyboard = DeviceEvent(
            DeviceAction.ADD,
            "input",
            "/dev/input/event3",
            *OTHER,
            (("ID_INPUT_KEYBOARD", "1"),),
        )
        for e in (metadata, keyboard, camera):
            source.put(e)
        wait_until(lambda: "/dev/video4" in provider.added())
        assert _open_in(running.cid, "/dev/video4") == 0
        assert _rules(running) - before == {f"c {KMSG[0]}:{KMSG[1]} rw"}
        for absent in ("/dev/video5", "/dev/input/event3"):
            assert _open_in(running.cid, absent) == errno.ENOENT

        source.put(dataclasses.replace(camera, action=DeviceAction.REMOVE, properties=()))
        wait_until(lambda: not provider.added())
        assert _open_in(running.cid, "/dev/video4") == errno.ENOENT
        assert _rules(running) == before
        # even a node put back by hand stays unusable: the rule went with the device
        _mknod_in(running.pid, "/dev/video4", KMSG)
        assert _open_in(running.cid, "/dev/video4") == errno.EPERM
        assert provider.errors == []
    finally:
        provider.teardown()


def test_gamepad_hotplug_adds_a_joystick_under_dev_input_never_keyboard_or_mouse(
    run_plan: Callable[[LaunchPlan], Running], tmp_path: Path
) -> None:
    _need_v1_devices()
    manifest = Manifest(
        app=AppInfo(id=_app_id(), name="Pad test", version="1.0", command=("sleep", "120")),
        capabilities=Capabilities(gamepad=True),
    )
    catalog = load_catalog()
    policy = merge(BUILTIN_DEFAULTS, manifest, SitePolicy(), None, catalog=catalog)
    plan = engine.plan(policy, _facts(()), catalog=catalog)  # no gamepad at launch
    (request,) = [r for r in plan.requests if isinstance(r, HotplugRequest)]
    running = run_plan(plan)
    # /dev/input does not exist in the container yet: the first event node makes it
    assert _open_in(running.cid, "/dev/input/event7") == errno.ENOENT
    before = _rules(running)
    source = QueueEventSource()
    provider = HotplugProvider(request, source_factory=lambda _r: source)
    provider.setup(ProviderContext("x.y.Z", tmp_path, APP_UID, APP_UID, "z", tmp_path))
    provider.attach(ContainerTarget(running.pid, str(running.devices_dir)))
    try:
        keyboard = DeviceEvent(
            DeviceAction.ADD,
            "input",
            "/dev/input/event3",
            *OTHER,
            (("ID_INPUT", "1"), ("ID_INPUT_KEY", "1"), ("ID_INPUT_KEYBOARD", "1")),
        )
        mouse = DeviceEvent(
            DeviceAction.ADD,
            "input",
            "/dev/input/event4",
            *OTHER,
            (("ID_INPUT", "1"), ("ID_INPUT_MOUSE", "1")),
        )
        pad = DeviceEvent(
            DeviceAction.ADD,
            "input",
            "/dev/input/event7",
            *KMSG,
            (("ID_INPUT", "1"), ("ID_INPUT_JOYSTICK", "1")),
        )
        for e in (keyboard, mouse, pad):
            source.put(e)
        wait_until(lambda: "/dev/input/event7" in provider.added())
        assert set(provider.added()) == {"/dev/input/event7"}
        assert _open_in(running.cid, "/dev/input/event7") == 0
        assert _rules(running) - before == {f"c {KMSG[0]}:{KMSG[1]} rw"}
        for refused in ("/dev/input/event3", "/dev/input/event4"):
            assert _open_in(running.cid, refused) == errno.ENOENT

        source.put(dataclasses.replace(pad, action=DeviceAction.REMOVE, properties=()))
        wait_until(lambda: not provider.added())
        assert _open_in(running.cid, "/dev/input/event7") == errno.ENOENT
        assert _rules(running) == before
        assert provider.errors == []
    finally:
        provider.teardown()
