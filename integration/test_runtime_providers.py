"""Integration: providers through the runtime: hotplug, audio, displays, stop and teardown."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulsectl
import pytest

import sandbox
from integration.components import (
    PulseServer,
    WaylandDisplay,
    X11Display,
    app_sink_inputs,
    missing,
    wait_until,
)
from integration.containers import open_errno_in
from sandbox.engine.adapter import DockerAdapter
from sandbox.host.names import unverified_app_id
from sandbox.policy.facts import DeviceFacts, GpuDevice
from sandbox.policy.plan import (
    GrantState,
    HotplugCgroup,
    HotplugRequest,
    WaylandSocketRequest,
    X11CookieRequest,
)
from sandbox.policy.vocabulary import Capability
from sandbox.providers import wayland, x11
from sandbox.providers.devices import DeviceAction, DeviceEvent, HotplugProvider, QueueEventSource
from sandbox.providers.registry import providers_for
from sandbox.runtime import gc, instances
from sandbox.runtime.planning import plan_for

pytestmark = pytest.mark.integration

CAM_APP = "org.sandboxtest.HotplugApp"
AUDIO_APP = "org.sandboxtest.AudioApp"
DETACHED_APP = "org.sandboxtest.DetachedApp"
GPU_X11_APP = "org.sandboxtest.GpuX11App"
FALLBACK_APP = "org.sandboxtest.FallbackApp"
WAYLAND_APP = "org.sandboxtest.WaylandApp"
PROBES = Path(__file__).resolve().parent / "probes"
SINK = "test_null"
KMSG = (1, 11)  # harmless: not in Docker's default allow list, opening it needs no capability
OTHER = (10, 183)
# ~4 s of raw 44.1 kHz stereo s16 noise, made inside the container (its root is read-only)
PLAY = f"head -c 700000 /dev/urandom | paplay --raw --device={SINK}"
RECORD = (
    f"parecord --device={SINK}.monitor /tmp/rec.wav & p=$!; sleep 2; "
    "if kill $p 2>/dev/null; then wait $p; echo RUNNING; else wait $p; echo EXIT=$?; fi"
)


def _build(
    base: str, tag: str, app_id: str, caps: str, tmp: Path, *, probes: tuple[str, ...] = ()
) -> str:
    ctx = tmp / tag.replace("/", "_")
    ctx.mkdir()
    copies = ""
    for name in probes:  # sandbox.launch mounts nothing of ours: the probe lives in the image
        shutil.copy(PROBES / name, ctx / name)
        copies += f"COPY {name} /probe/{name}\n"
    manifest = textwrap.dedent(
        f"""\
        manifest-version = 1
        [app]
        id = "{app_id}"
        name = "Provider test"
        version = "1.0"
        command = ["/bin/sh", "-c"]
        [capabilities]
        """
    )
    (ctx / "sandbox.toml").write_text(manifest + caps)
    labels = subprocess.run(
        [sys.executable, "-m", "sandbox", "manifest", "labels", "--dockerfile", "sandbox.toml"],
        cwd=ctx, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    (ctx / "Dockerfile").write_text(f"FROM {base}\n{copies}{labels}")
    subprocess.run(["docker", "build", "-q", "-t", tag, "."], cwd=ctx, check=True)
    return tag


@pytest.fixture(scope="module")
def images(
    docker_client_url: str, tools_image: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    os.environ["DOCKER_HOST"] = docker_client_url
    tmp = tmp_path_factory.mktemp("provider-apps")
    return {
        CAM_APP: _build(tools_image, "sandbox-test/rt-webcam", CAM_APP, "webcam = true\n", tmp),
        AUDIO_APP: _build(
            tools_image, "sandbox-test/rt-audio", AUDIO_APP, 'audio = ["playback"]\n', tmp
        ),
        DETACHED_APP: _build(
            tools_image,
            "sandbox-test/rt-detached",
            DETACHED_APP,
            'display = "x11"\naudio = ["playback"]\n',
            tmp,
        ),
    }


@pytest.fixture(scope="module")
def probe_image(
    docker_client_url: str, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """An x11-and-gpu app built FROM the runtime base (python3-xlib) with the X11 probe inside."""
    os.environ["DOCKER_HOST"] = docker_client_url
    return _build(
        base_image,
        "sandbox-test/rt-gpu-x11",
        GPU_X11_APP,
        'display = "x11"\ngpu = true\n',
        tmp_path_factory.mktemp("probe-app"),
        probes=("x11_probe.py",),
    )


@pytest.fixture(scope="module")
def display_images(
    docker_client_url: str,
    base_image: str,
    tools_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    os.environ["DOCKER_HOST"] = docker_client_url
    tmp = tmp_path_factory.mktemp("display-apps")
    return {
        FALLBACK_APP: _build(
            base_image,
            "sandbox-test/rt-fallback",
            FALLBACK_APP,
            'display = "wayland-or-x11"\n',
            tmp,
            probes=("x11_probe.py",),
        ),
        WAYLAND_APP: _build(
            tools_image, "sandbox-test/rt-wayland", WAYLAND_APP, 'display = "wayland"\n', tmp
        ),
    }


@pytest.fixture
def host_window(x11_display: X11Display) -> Iterator[int]:
    """A mapped window owned by a trusted host client (this test process)."""
    d = x11.open_display(
        x11_display.display, Path(x11_display.xauthority) if x11_display.xauthority else None
    )
    win = d.screen().root.create_window(0, 0, 64, 64, 0, d.screen().root_depth)
    win.set_wm_name("host secret")
    win.map()
    d.sync()
    yield win.id
    win.destroy()
    d.close()


def _probe_result(session: sandbox.Session, out: io.BytesIO) -> dict[str, Any]:
    code = session.wait()
    text = out.getvalue().decode()
    assert code == 0, text
    result: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return result


@pytest.fixture(autouse=True)
def _private_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    yield
    gc.gc()


@pytest.fixture
def pulse(pulse_server: PulseServer) -> Iterator[pulsectl.Pulse]:
    with pulsectl.Pulse("sandbox-runtime-test", server=pulse_server.server) as p:
        yield p


# --- 1. hotplug through sandbox.launch --------------------------------------------------------


def test_hotplug_through_the_runtime(images: dict[str, str]) -> None:
    if os.geteuid() != 0 or not Path("/sys/fs/cgroup/devices/devices.list").exists():
        missing("hotplug needs root and the cgroup v1 devices hierarchy")
    prepared = sandbox.plan(images[CAM_APP])
    # This host has no udevd: describe one that has (none plugged in at launch), and feed the
    # provider's events by hand instead of from netlink.
    facts = dataclasses.replace(prepared.facts, devices=DeviceFacts(True, udev_properties=True))
    plan, providers = providers_for(plan_for(prepared.manifest, facts))
    (request,) = [r for r in plan.requests if isinstance(r, HotplugRequest)]
    assert request.cgroup is HotplugCgroup.PER_NODE
    (registered,) = [p for p in providers if isinstance(p, HotplugProvider)]
    assert registered.request == request  # the registry serves the request
    source = QueueEventSource()
    provider = HotplugProvider(request, source_factory=lambda _r: source)
    providers = tuple(provider if p is registered else p for p in providers)
    prepared = dataclasses.replace(prepared, facts=facts, plan=plan, providers=providers)

    session = sandbox.launch(prepared, args=("sleep 60",), stdio=None)
    try:
        wait_until(lambda: any(t.name == provider.name for t in threading.enumerate()))
        camera = DeviceEvent(
            DeviceAction.ADD, "video4linux", "/dev/video4", *KMSG,
            (("ID_V4L_CAPABILITIES", ":capture:"),),
        )  # fmt: skip
        metadata = DeviceEvent(
            DeviceAction.ADD, "video4linux", "/dev/video5", *OTHER,
            (("ID_V4L_CAPABILITIES", ":"),),
        )  # fmt: skip
        source.put(metadata)
        source.put(camera)
        wait_until(lambda: "/dev/video4" in provider.added(), what="hotplugged node")
        assert open_errno_in(session.container_id, "/dev/video4") == 0
        assert open_errno_in(session.container_id, "/dev/video5") == errno.ENOENT
        source.put(dataclasses.replace(camera, action=DeviceAction.REMOVE, properties=()))
        wait_until(lambda: not provider.added(), what="unplug")
        assert open_errno_in(session.container_id, "/dev/video4") == errno.ENOENT
    finally:
        session.stop(timeout_s=1)
        session.wait()
    assert provider.errors == []
    assert not any(t.name == provider.name for t in threading.enumerate()), "watcher stopped"


# --- 3. audio through the API: attribution of the stream ---------------------------------------


def test_playback_is_attributed_and_record_refused(
    images: dict[str, str], pulse_server: PulseServer, pulse: pulsectl.Pulse
) -> None:
    prepared = sandbox.plan(images[AUDIO_APP])
    runs_as = _runs_as(images, AUDIO_APP)
    assert prepared.manifest.app.id == runs_as  # not installed: an unverified copy
    assert [p.name for p in prepared.providers] == ["audio.playback"]
    session = sandbox.launch(prepared, args=(PLAY,), stdio=None)
    try:
        seen: list[dict[str, str]] = []

        def stream() -> bool:
            seen[:] = app_sink_inputs(pulse, runs_as)
            return bool(seen)

        wait_until(stream, what="the app's sink input")
        pid = int(seen[0]["application.process.id"])
        ident = sandbox.app_for_pid(pid)
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    finally:
        code = session.wait()
    assert code == 0
    assert ident is not None and ident.app_id == runs_as
    assert ident.instance_id == session.instance_id
    assert comm == "paplay"

    out = io.BytesIO()
    session = sandbox.launch(
        sandbox.plan(images[AUDIO_APP]), args=(RECORD,), stdio=sandbox.Stdio(stdout=out)
    )
    session.wait()
    text = out.getvalue().decode()
    assert "EXIT=" in text and "EXIT=0" not in text, text


# --- 2. detached instances keep their providers ------------------------------------------------


def _runs_as(images: dict[str, str], app: str) -> str:
    """The identity the uninstalled image of `app` runs as (docs/security.md "Identity")."""
    return unverified_app_id(app, DockerAdapter.from_env().image_config(images[app]).id)


def _containers_of(images: dict[str, str], app: str) -> tuple[object, ...]:
    return DockerAdapter.from_env().containers_with_label("sandbox.app-id", _runs_as(images, app))


def _run_detached(image: str, script: str) -> instances.Instance:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", "-y", "-d", image, "--", script],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    instance_id = done.stdout.strip()
    base = instances.instances_dir(os.geteuid())
    inst = instances.load(base / instance_id)
    assert inst is not None and inst.state.detached
    assert inst.state.launcher_pid != os.getpid()
    assert instances.launcher_alive(inst.state.launcher), "the supervisor runs"
    return inst


def _cookie_works(display: X11Display, xauthority: Path) -> bool:
    env = {**os.environ, "DISPLAY": display.display, "XAUTHORITY": str(xauthority)}
    return subprocess.run(["xdpyinfo"], env=env, capture_output=True, check=False).returncode == 0


def _gone(inst: instances.Instance) -> bool:
    return not inst.path.exists() and not instances.launcher_alive(inst.state.launcher)


def test_detached_app_keeps_audio_and_tears_down_when_it_ends(
    images: dict[str, str], x11_display: X11Display, pulse: pulsectl.Pulse, tmp_path: Path
) -> None:
    inst = _run_detached(images[DETACHED_APP], f"sleep 0.5; {PLAY}")
    kept = tmp_path / "kept-cookie"
    kept.write_bytes((inst.path / "Xauthority").read_bytes())
    assert _cookie_works(x11_display, kept)
    proxy_socket = inst.path / "pulse" / "native"
    assert proxy_socket.is_socket()
    # the launcher has returned: audio still flows through the supervisor's proxy
    runs_as = _runs_as(images, DETACHED_APP)
    wait_until(lambda: bool(app_sink_inputs(pulse, runs_as)), what="detached app's stream")
    wait_until(lambda: _gone(inst), timeout=20, what="teardown after the app ended")
    assert not proxy_socket.exists()
    assert not _cookie_works(x11_display, kept), "the cookie was revoked"
    assert not _containers_of(images, DETACHED_APP)


def test_stop_of_a_detached_instance_tears_down(
    images: dict[str, str], x11_display: X11Display, tmp_path: Path
) -> None:
    inst = _run_detached(images[DETACHED_APP], "sleep 60")
    kept = tmp_path / "kept-cookie"
    kept.write_bytes((inst.path / "Xauthority").read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "stop", "-t", "1", inst.state.instance_id],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _gone(inst), "stop returns once the supervisor has torn down"
    assert not _cookie_works(x11_display, kept)
    assert not _containers_of(images, DETACHED_APP)


def test_gc_after_a_sigkilled_supervisor(
    images: dict[str, str], x11_display: X11Display, tmp_path: Path
) -> None:
    inst = _run_detached(images[DETACHED_APP], "sleep 60")
    kept = tmp_path / "kept-cookie"
    kept.write_bytes((inst.path / "Xauthority").read_bytes())
    os.kill(inst.state.launcher_pid, signal.SIGKILL)
    wait_until(lambda: not instances.launcher_alive(inst.state.launcher))
    assert _cookie_works(x11_display, kept), "nothing revoked it yet"
    report = gc.gc()
    assert not report.problems, report.problems
    assert inst.state.instance_id in report.containers
    assert not inst.path.exists()
    assert not _cookie_works(x11_display, kept)
    assert not _containers_of(images, DETACHED_APP)


# --- 4. untrusted X11 also with the GPU, through the engine and the runtime ----------------------


def test_x11_cookie_stays_untrusted_with_a_gpu_granted(
    probe_image: str, x11_display: X11Display, host_window: int
) -> None:
    prepared = sandbox.plan(probe_image)
    # This host has no GPU: describe one (a harmless node), the way the hotplug test fakes udev.
    gpu = GpuDevice("/dev/null", 1, 3)
    facts = dataclasses.replace(
        prepared.facts, devices=DeviceFacts(True, gpus=(gpu,), udev_properties=True)
    )
    plan, providers = providers_for(plan_for(prepared.manifest, facts))
    states = {s.permission: s.state for s in plan.statuses}
    assert states[Capability.GPU] is GrantState.GRANTED
    assert states[Capability.DISPLAY_X11] is GrantState.GRANTED
    assert states[Capability.DISPLAY_X11_TRUSTED] is not GrantState.GRANTED
    cookies = [r for r in plan.requests if isinstance(r, X11CookieRequest)]
    assert [c.trusted for c in cookies] == [False]
    assert [d.path for d in plan.devices] == [gpu.node]
    prepared = dataclasses.replace(prepared, facts=facts, plan=plan, providers=providers)

    out = io.BytesIO()
    session = sandbox.launch(
        prepared,
        args=(f"python3 /probe/x11_probe.py {host_window}",),
        stdio=sandbox.Stdio(stdout=out),
    )
    r = _probe_result(session, out)
    assert r["own_window"] == "ok"
    assert r["getimage_root"] == "BadAccess"
    assert r["getimage_host"] == "BadAccess"
    assert not r["xtest"] and not r["xres"]


# --- 5. wayland-or-x11 without a compositor, and Wayland through the runtime ---------------------


def test_wayland_or_x11_without_a_compositor_gets_untrusted_x11(
    display_images: dict[str, str],
    x11_display: X11Display,
    host_window: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-nobody-listens")
    prepared = sandbox.plan(display_images[FALLBACK_APP])
    wayland = prepared.plan.status(Capability.DISPLAY_WAYLAND)
    x11_status = prepared.plan.status(Capability.DISPLAY_X11)
    assert wayland is not None and wayland.state is GrantState.UNAVAILABLE, wayland
    assert wayland.detail  # the review says why this host gets no Wayland
    assert x11_status is not None and x11_status.state is GrantState.GRANTED, x11_status
    cookies = [r for r in prepared.plan.requests if isinstance(r, X11CookieRequest)]
    assert [c.trusted for c in cookies] == [False]
    assert not [r for r in prepared.plan.requests if isinstance(r, WaylandSocketRequest)]

    out = io.BytesIO()
    session = sandbox.launch(
        prepared,
        args=(f"python3 /probe/x11_probe.py {host_window}",),
        stdio=sandbox.Stdio(stdout=out),
    )
    r = _probe_result(session, out)
    assert r["own_window"] == "ok"
    assert r["getimage_root"] == "BadAccess"
    assert r["getimage_host"] == "BadAccess"
    assert not r["xtest"] and not r["xres"]


def test_wayland_app_lists_globals_and_its_grant_dir_goes(
    display_images: dict[str, str], wayland_display: WaylandDisplay
) -> None:
    prepared = sandbox.plan(display_images[WAYLAND_APP])
    assert [p.name for p in prepared.providers] == ["display.wayland"]
    uid = prepared.plan.hardening.user.uid
    grants = Path(wayland_display.socket_path).parent / wayland.GRANTS_DIR
    out = io.BytesIO()
    session = sandbox.launch(
        prepared,
        args=("id -u; wayland-info; sleep 1",),
        stdio=sandbox.Stdio(stdout=out),
    )
    try:
        # named after the instance's pending dir (it is made before the container exists)
        state = json.loads((session.instance_dir / wayland.STATE_FILE).read_text())
        grant_dir = Path(state["dir"])
        assert grant_dir.parent == grants
        assert grant_dir.is_dir(), "the per-instance grant dir exists while the app runs"
    finally:
        code = session.wait()
    text = out.getvalue().decode()
    assert code == 0, text
    assert text.splitlines()[0] == str(uid)  # the plan's uid (the invoking user's), as granted
    assert "wl_compositor" in text, text
    assert not grant_dir.exists(), "the grant dir is removed when the app ends"


def test_stop_of_a_foreground_run_tears_down(
    images: dict[str, str], x11_display: X11Display, tmp_path: Path
) -> None:
    """`sandbox run` without -d, stopped by `sandbox stop` from another process."""
    launcher = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "run", "-y", images[DETACHED_APP], "--", "sleep 60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        base = instances.instances_dir(os.geteuid())
        found: list[instances.Instance] = []

        def started() -> bool:
            found[:] = [
                i
                for i in instances.list_instances(base)
                if i.state.launcher_pid == launcher.pid and i.state.container_id
            ]
            return bool(found) and (found[0].path / "Xauthority").exists()

        wait_until(started, timeout=30, what="the foreground instance")
        (inst,) = found
        assert not inst.state.detached
        kept = tmp_path / "kept-cookie"
        kept.write_bytes((inst.path / "Xauthority").read_bytes())
        assert _cookie_works(x11_display, kept)
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", "stop", "-t", "1", inst.state.instance_id],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        launcher.wait(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        _, err = launcher.communicate()
    assert _gone(inst), err
    assert not _cookie_works(x11_display, kept), "the cookie was revoked"
    assert not _containers_of(images, DETACHED_APP)
