"""The desktop guest is what issue 13 promises: checked as the desktop user, inside the guest.

Run by `./integration/vm.sh run -- python3 -m pytest -q integration/guest`. Each check asks the
real component (systemd, the kernel, udev's database, the servers' sockets), never a config file.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from integration.guest.conftest import in_guest

pytestmark = pytest.mark.skipif(not in_guest(), reason="runs only inside the desktop guest")

DESKTOP_UID = 1000
SETTLE_S = 90.0  # everything here is up once boot finished; under TCG allow for slow first answers

T = TypeVar("T")


def sh(*argv: str, timeout: float = 60.0) -> str:
    """Run argv; return its stdout, failing the test with its stderr when it exits non-zero."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"
    return proc.stdout


def eventually(check: Callable[[], T | None], what: str, timeout: float = SETTLE_S) -> T:
    """Poll check until it returns something other than None (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = check()
            if got is not None:
                return got
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout:.0f} s (last error: {last!r})")
        time.sleep(0.5)


def unix_http_get(path: str, sock_path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(sock_path)

    conn = Conn("localhost", timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def udev_devices(subsystem: str) -> list[object]:
    import pyudev

    return list(pyudev.Context().list_devices(subsystem=subsystem))


# ---------------------------------------------------------------------------- system


def test_runs_as_the_desktop_user_not_root() -> None:
    assert os.getuid() == DESKTOP_UID
    assert os.geteuid() == DESKTOP_UID
    assert "DOCKER_HOST" not in os.environ


def test_pid1_is_systemd_252() -> None:
    assert Path("/proc/1/comm").read_text().strip() == "systemd"
    assert sh("systemctl", "--version").split()[:2] == ["systemd", "252"]
    state = subprocess.run(
        ["systemctl", "is-system-running"], capture_output=True, text=True, check=False
    ).stdout.strip()
    assert state in {"running", "degraded"}, state


def test_cgroup_v2_unified_hierarchy() -> None:
    mounts = [line.split(" - ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    by_point = {left.split()[4]: right.split()[0] for left, right in mounts}
    assert by_point["/sys/fs/cgroup"] == "cgroup2"
    v1 = [point for point, fstype in by_point.items() if fstype == "cgroup"]
    assert not v1, f"v1 hierarchies mounted: {v1}"
    # This process sits in the unified tree, in the login's session scope.
    assert Path("/proc/self/cgroup").read_text().startswith("0::/user.slice/")


def test_udevd_and_logind_run() -> None:
    for unit in ("systemd-udevd.service", "systemd-logind.service"):
        assert sh("systemctl", "is-active", unit).strip() == "active", unit
    assert sh("udevadm", "--version").strip() == "252"


# --------------------------------------------------------------------------- session


def test_lingering_user_manager_runs() -> None:
    state = eventually(
        lambda: sh("systemctl", "--user", "is-system-running").strip() or None, "user manager"
    )
    assert state == "running"
    assert sh("loginctl", "show-user", str(DESKTOP_UID), "-p", "Linger", "--value").strip() == "yes"
    assert os.environ["XDG_RUNTIME_DIR"] == f"/run/user/{DESKTOP_UID}"


def test_session_bus_answers() -> None:
    address = os.environ["DBUS_SESSION_BUS_ADDRESS"]
    assert address == f"unix:path=/run/user/{DESKTOP_UID}/bus"
    out = sh(
        "busctl",
        "--user",
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "GetId",
    )
    assert out.startswith('s "')
    # The user manager is on that bus (what systemd-run --user and app scopes go through).
    names = sh("busctl", "--user", "list", "--acquired", "--no-legend")
    assert "org.freedesktop.systemd1" in names


def test_pipewire_pulse_answers() -> None:
    for unit in ("pipewire.service", "wireplumber.service", "pipewire-pulse.service"):
        assert sh("systemctl", "--user", "is-active", unit).strip() == "active", unit
    info = eventually(lambda: sh("pactl", "info", timeout=30), "pactl info")
    assert "PipeWire" in info, info
    assert f"/run/user/{DESKTOP_UID}/pulse/native" in info


def test_wayland_compositor_answers() -> None:
    assert os.environ["WAYLAND_DISPLAY"] == "wayland-0"
    assert Path(os.environ["XDG_RUNTIME_DIR"], "wayland-0").is_socket()
    out = eventually(lambda: sh("wayland-info", timeout=30), "wayland-info")
    assert "wl_compositor" in out
    assert "weston" in out.lower() or "xdg_wm_base" in out


def test_xwayland_provides_an_x_display() -> None:
    assert os.environ["DISPLAY"] == ":0"
    # Weston starts Xwayland on the first X client; under TCG that takes a while.
    out = eventually(lambda: sh("xdpyinfo", timeout=60), "xdpyinfo on :0")
    assert "vendor string:    The X.Org Foundation" in out
    # Xwayland 22 has no XWAYLAND extension yet: the server on :0 is the Xwayland that the
    # user's Weston spawned (its window manager stays connected, so it keeps running).
    servers = [
        line.split(None, 2)
        for line in sh("ps", "-C", "Xwayland", "-o", "ppid=,uid=,args=").splitlines()
    ]
    assert servers, "no Xwayland process"
    ppid, uid, args = servers[0]
    assert args.split()[:2] == ["/usr/bin/Xwayland", ":0"], args
    assert int(uid) == DESKTOP_UID
    assert Path(f"/proc/{ppid}/comm").read_text().strip() == "weston"


# --------------------------------------------------------------------------- engines


def test_docker_system_engine_systemd_driver_cgroup_v2() -> None:
    groups = sh("id", "-nG").split()
    assert "docker" in groups
    out = eventually(
        lambda: sh("docker", "info", "--format", "{{.CgroupVersion}} {{.CgroupDriver}}").strip(),
        "docker info",
    )
    assert out == "2 systemd"


def test_rootless_podman_socket_answers() -> None:
    sock = Path(os.environ["XDG_RUNTIME_DIR"], "podman", "podman.sock")
    assert sock.is_socket(), f"{sock} (podman.socket of the user manager) is missing"
    status, body = eventually(lambda: unix_http_get("/_ping", str(sock)), "podman /_ping")
    assert (status, body) == (200, b"OK")
    status, body = unix_http_get("/v4.0.0/libpod/info", str(sock))
    assert status == 200
    host = json.loads(body)["host"]
    assert host["security"]["rootless"] is True
    assert host["cgroupVersion"] == "v2"
    assert host["cgroupManager"] == "systemd"


# --------------------------------------------------------------------------- devices


def test_udev_knows_the_vivid_webcam() -> None:
    def capture() -> object | None:
        for dev in udev_devices("video4linux"):
            if ":capture:" in dev.properties.get("ID_V4L_CAPABILITIES", ""):  # type: ignore[attr-defined]
                return dev
        return None

    dev = eventually(capture, "a video4linux node with :capture:")
    node = dev.device_node  # type: ignore[attr-defined]
    assert node is not None and node.startswith("/dev/video")
    assert Path(node).is_char_device()


def test_udev_knows_the_uinput_gamepad() -> None:
    def js0() -> object | None:
        for dev in udev_devices("input"):
            if dev.sys_name == "js0":  # type: ignore[attr-defined]
                return dev
        return None

    dev = eventually(js0, "/dev/input/js0 in udev")
    assert dev.properties.get("ID_INPUT_JOYSTICK") == "1"  # type: ignore[attr-defined]
    assert dev.device_node == "/dev/input/js0"  # type: ignore[attr-defined]
    assert Path("/dev/input/js0").is_char_device()


def test_udev_knows_the_render_node() -> None:
    nodes = {d.device_node: d for d in udev_devices("drm")}  # type: ignore[attr-defined]
    dev = nodes.get("/dev/dri/renderD128")
    assert dev is not None, sorted(n for n in nodes if n)
    assert dev.properties.get("DEVTYPE") == "drm_minor"  # type: ignore[attr-defined]
    assert dev.find_parent("pci").driver == "virtio-pci"  # type: ignore[attr-defined]


def test_udev_knows_a_sound_card() -> None:
    cards = [d for d in udev_devices("sound") if d.sys_name.startswith("card")]  # type: ignore[attr-defined]
    assert cards, "no sound card in udev"
    assert Path("/dev/snd/controlC0").is_char_device()
