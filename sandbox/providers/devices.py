"""Device hotplug provider: adds/removes matching udev nodes in a running container; no policy."""

from __future__ import annotations

import enum
import os
import posixpath
import queue
import re
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sandbox.errors import ProviderError
from sandbox.host.udev import UdevRecord, is_capture_node, is_joystick_only
from sandbox.policy.plan import (
    DeviceNode,
    HotplugCgroup,
    HotplugRequest,
    HotplugSubsystem,
    LaunchPlan,
)
from sandbox.providers.grant import Grant, ProviderContext

POLL_S = 0.2  # how often the watcher thread looks at its stop flag
JOIN_S = 5.0
NODE_MODE = 0o660  # root:<app gid>, as udev makes them root:video / root:input 0660
DIR_MODE = 0o755
DEVICES_ALLOW = "devices.allow"
DEVICES_DENY = "devices.deny"

_JOYSTICK_NODE = re.compile(r"(event|js)\d+")
_V4L_NODE = re.compile(r"video\d+")


class DeviceAction(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class DeviceEvent:
    """One udev uevent as plain data: what the matching rules and the node maker need."""

    action: DeviceAction
    subsystem: str
    node: str  # "/dev/input/event7"
    major: int
    minor: int
    properties: tuple[tuple[str, str], ...] = ()

    def property(self, key: str) -> str | None:
        return dict(self.properties).get(key)


# poll(timeout_s) -> the next event, or None when none came within timeout_s.
EventSource = Callable[[float], DeviceEvent | None]


class QueueEventSource:
    """An EventSource fed by hand (tests, or a caller that already listens to udev)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[DeviceEvent] = queue.Queue()

    def put(self, event: DeviceEvent) -> None:
        self._queue.put(event)

    def __call__(self, timeout_s: float) -> DeviceEvent | None:
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None


def _plain_node(node: str) -> bool:
    return (
        node.startswith("/dev/")
        and posixpath.normpath(node) == node
        and "\0" not in node
        and all(part not in ("", ".", "..") for part in node[1:].split("/"))
    )


def matches(request: HotplugRequest, event: DeviceEvent) -> bool:
    """Whether an ADDED device is one the grant covers; the same rules as the probe's.

    video4linux: capture nodes only (never a UVC metadata or output-only node). input: evdev
    or legacy js nodes udev calls a joystick and neither a keyboard nor a mouse, so that the
    low-risk `gamepad` can never read what is typed or pointed at.
    """
    if event.subsystem != request.subsystem or not _plain_node(event.node):
        return False
    if any(event.property(k) != v for k, v in request.match):
        return False
    name = posixpath.basename(event.node)
    match request.subsystem:
        case HotplugSubsystem.VIDEO4LINUX:
            record = UdevRecord(
                sys_path=event.node,
                subsystem=event.subsystem,
                node=event.node,
                number=(event.major, event.minor),
                properties=dict(event.properties),
            )
            return _V4L_NODE.fullmatch(name) is not None and is_capture_node(record)
        case HotplugSubsystem.INPUT:
            return _JOYSTICK_NODE.fullmatch(name) is not None and is_joystick_only(
                dict(event.properties)
            )


class ContainerDevices(Protocol):
    """Where the provider makes a node usable: the container's device cgroup and its /dev."""

    def allow(self, major: int, minor: int) -> None: ...
    def deny(self, major: int, minor: int) -> None: ...
    def create(self, node: str, major: int, minor: int) -> None: ...
    def remove(self, node: str) -> None: ...


@dataclass(frozen=True)
class ContainerTarget:
    """The running container: its init's host pid and (cgroup v1) its devices cgroup dir."""

    pid: int
    devices_cgroup: str | None = None


def _mounts_with(option: str, mountinfo: str) -> list[str]:
    found = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        cgroup_v1 = len(fields) >= 5 and len(tail) >= 3 and tail[0] == "cgroup"
        if cgroup_v1 and option in tail[2].split(","):
            found.append(fields[4])
    return found


def devices_cgroup_dir(pid: int, proc: str = "/proc") -> str | None:
    """The v1 devices cgroup directory of a host pid, or None where there is no v1 devices."""
    try:
        with open(f"{proc}/self/mountinfo", encoding="utf-8") as f:
            mounts = _mounts_with("devices", f.read())
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ProviderError(f"hotplug: cannot read the cgroups of pid {pid}: {exc}") from exc
    if not mounts:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "devices" in controllers.split(","):
            return os.path.join(mounts[0], path.lstrip("/"))
    return None


class HostContainerDevices:
    """The real ContainerDevices: cgroup v1 devices.allow/deny and mknod via /proc/PID/root.

    Runs as root on the host. Every path component under the container's /dev is opened with
    O_NOFOLLOW relative to the previous one, so a symlink planted in the container's /dev can
    never send the mknod or the unlink somewhere on the host.
    """

    def __init__(
        self, target: ContainerTarget, gid: int, mode: HotplugCgroup, *, proc: str = "/proc"
    ) -> None:
        self._root = f"{proc}/{target.pid}/root"
        self._target = target
        self._gid = gid
        self._per_node = mode is HotplugCgroup.PER_NODE
        if self._per_node and target.devices_cgroup is None:
            raise ProviderError("hotplug: per-node device rules need the v1 devices cgroup")

    def _write_rule(self, file: str, major: int, minor: int) -> None:
        if not self._per_node:
            return  # v2: the plan pre-allowed the major; the engine's BPF filter stays as is
        assert self._target.devices_cgroup is not None
        path = os.path.join(self._target.devices_cgroup, file)
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(f"c {major}:{minor} rw")
        except OSError as exc:
            raise ProviderError(f"hotplug: cannot write {path}: {exc.strerror or exc}") from exc

    def allow(self, major: int, minor: int) -> None:
        self._write_rule(DEVICES_ALLOW, major, minor)

    def deny(self, major: int, minor: int) -> None:
        self._write_rule(DEVICES_DENY, major, minor)

    def _parent_fd(self, node: str, *, create: bool) -> tuple[int, str]:
        parts = node.split("/")[1:]  # "/dev/input/event7" -> ["dev", "input", "event7"]
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    nxt = os.open(part, flags, dir_fd=fd)
                except FileNotFoundError:
                    if not create or i == 0:
                        raise
                    os.mkdir(part, DIR_MODE, dir_fd=fd)
                    nxt = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd, parts[-1]

    def create(self, node: str, major: int, minor: int) -> None:
        try:
            fd, name = self._parent_fd(node, create=True)
        except OSError as exc:
            raise ProviderError(f"hotplug: cannot reach {node} in the container: {exc}") from exc
        try:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(major, minor):
                    return  # the engine made it at launch, or the add came twice
                os.unlink(name, dir_fd=fd)
            os.mknod(name, NODE_MODE | stat.S_IFCHR, os.makedev(major, minor), dir_fd=fd)
            os.chown(name, 0, self._gid, dir_fd=fd, follow_symlinks=False)
            os.chmod(name, NODE_MODE, dir_fd=fd, follow_symlinks=False)  # undo the umask
        except OSError as exc:
            raise ProviderError(f"hotplug: cannot create {node}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    def remove(self, node: str) -> None:
        try:
            fd, name = self._parent_fd(node, create=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ProviderError(f"hotplug: cannot reach {node} in the container: {exc}") from exc
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ProviderError(f"hotplug: cannot remove {node}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)


class UdevEventSource:
    """EventSource over a pyudev netlink Monitor filtered to one subsystem."""

    def __init__(self, subsystems: Iterable[str]) -> None:
        import pyudev  # here: only a running hotplug needs libudev

        self._monitor = pyudev.Monitor.from_netlink(pyudev.Context())
        for subsystem in subsystems:  # several filters are OR-ed
            self._monitor.filter_by(subsystem=subsystem)
        self._monitor.start()

    def __call__(self, timeout_s: float) -> DeviceEvent | None:
        device = self._monitor.poll(timeout=timeout_s)
        if device is None:
            return None
        try:
            action = DeviceAction(device.action or "")
        except ValueError:
            return None  # change, bind, unbind, move: nothing to add or take away
        props: Mapping[str, str] = {str(k): str(v) for k, v in dict(device.properties).items()}
        major, minor = props.get("MAJOR", ""), props.get("MINOR", "")
        if not (device.device_node and major.isdigit() and minor.isdigit()):
            return None
        return DeviceEvent(
            action,
            device.subsystem or "",
            device.device_node,
            int(major),
            int(minor),
            tuple(sorted(props.items())),
        )


def _udev_source(request: HotplugRequest) -> EventSource:
    # A camera's /dev/mediaN is never added on hotplug, but one present at launch must still
    # be taken away when the camera goes: its removal comes from the media subsystem.
    extra = ("media",) if request.subsystem is HotplugSubsystem.VIDEO4LINUX else ()
    return UdevEventSource((str(request.subsystem), *extra))


class HotplugProvider:
    """Watches udev while one instance runs; adds matching nodes and takes unplugged ones away.

    setup() grants nothing (the nodes present at launch are already in plan.devices, with the
    engine's own exact cgroup rules); attach() starts the watcher once the container runs; the
    session must call it with the container's pid. teardown() stops and joins the thread and is
    idempotent. Failures inside the thread never raise into the app: they are kept in `errors`.
    """

    def __init__(
        self,
        request: HotplugRequest,
        *,
        present: Iterable[DeviceNode] = (),
        source_factory: Callable[[HotplugRequest], EventSource] = _udev_source,
        devices_factory: Callable[[ContainerTarget, int, HotplugCgroup], ContainerDevices]
        | None = None,
    ) -> None:
        self.name = f"hotplug {request.capability}"
        self.request = request
        self._source_factory = source_factory
        self._devices_factory = devices_factory or HostContainerDevices
        self._gid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Launch-time nodes are tracked too: when one is unplugged its node and (v1) the
        # engine's exact rule must go, or a keyboard that later gets the same event minor
        # would be readable through the stale /dev/input/eventN.
        self._added: dict[str, tuple[int, int]] = {d.path: (d.major, d.minor) for d in present}
        self.errors: list[str] = []

    def setup(self, ctx: ProviderContext) -> Grant:
        self._gid = ctx.gid
        return Grant()

    def attach(self, target: ContainerTarget) -> None:
        if self._gid is None:
            raise ProviderError(f"{self.name}: attach() before setup()")
        if self._thread is not None:
            raise ProviderError(f"{self.name}: already attached")
        devices = self._devices_factory(target, self._gid, self.request.cgroup)
        try:
            source = self._source_factory(self.request)
        except OSError as exc:
            # pyudev opens a netlink socket here: no udev (a container host, a seccomp'd
            # launcher) must read as the provider failing, not as a raw OSError.
            raise ProviderError(
                f"{self.name}: cannot watch udev for {self.request.subsystem} devices "
                f"(devices plugged in while the app runs will not be added): "
                f"{exc.strerror or exc}"
            ) from exc
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(source, devices), name=self.name, daemon=True
        )
        self._thread.start()

    def added(self) -> dict[str, tuple[int, int]]:
        """The nodes this provider has added and not yet taken away: node -> (major, minor)."""
        with self._lock:
            return dict(self._added)

    def _run(self, source: EventSource, devices: ContainerDevices) -> None:
        while not self._stop.is_set():
            try:
                event = source(POLL_S)
            except Exception as exc:  # a dead source ends hotplug, never the app
                self.errors.append(f"event source failed: {exc}")
                return
            if event is not None:
                self.handle(event, devices)

    def handle(self, event: DeviceEvent, devices: ContainerDevices) -> None:
        try:
            if event.action is DeviceAction.ADD and matches(self.request, event):
                devices.allow(event.major, event.minor)
                devices.create(event.node, event.major, event.minor)
                with self._lock:
                    self._added[event.node] = (event.major, event.minor)
            elif event.action is DeviceAction.REMOVE:
                # Only what was added here, by node; remove events carry few properties.
                with self._lock:
                    number = self._added.pop(event.node, None)
                if number is not None:
                    devices.deny(*number)
                    devices.remove(event.node)
        except (ProviderError, OSError) as exc:
            self.errors.append(str(exc))

    def teardown(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_S)
            if thread.is_alive():
                raise ProviderError(f"{self.name}: the watcher did not stop in {JOIN_S:g} s")


def hotplug_providers(plan: LaunchPlan) -> tuple[HotplugProvider, ...]:
    """One provider per HotplugRequest of a plan, each knowing its launch-time nodes."""
    return tuple(
        HotplugProvider(r, present=tuple(d for d in plan.devices if d.capability == r.capability))
        for r in plan.requests
        if isinstance(r, HotplugRequest)
    )
