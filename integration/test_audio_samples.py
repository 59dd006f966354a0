"""Integration: the shared sample cache from a hardened container through the per-app proxy.

Against the harness's PulseAudio and a private pipewire-pulse: 400 uploads stop at the app's cap,
what the app uploaded is gone from the server when its proxy stops, and the desktop's
`bell-window-system` (uploaded on the host by the test) is neither replaced nor removed by the
app, which may still play it.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from integration.components import PulseServer
from integration.containers import APP_UID
from integration.test_audio_pipewire import pipewire  # noqa: F401 - the fixture, reused
from integration.test_audio_pulse_proxy import _run, workdir  # noqa: F401 - fixture
from sandbox.providers.pulse.proxy import PulseProxy, write_client_conf
from sandbox.providers.pulse.rules import AudioGrant
from sandbox.providers.pulse.samples import DEFAULT_MAX_SAMPLES, sample_name

pytestmark = pytest.mark.integration

SINK = "test_null"
DESKTOP = "bell-window-system"
SERVERS = ["pulse_server", "pipewire"]


@pytest.fixture(params=SERVERS, ids=["pulseaudio", "pipewire-pulse"])
def server(request: pytest.FixtureRequest) -> PulseServer:
    value = request.getfixturevalue(request.param)
    assert isinstance(value, PulseServer)
    return value


@pytest.fixture
def app_id() -> str:
    return f"org.sandboxtest.Samples{os.getpid()}"


def _sox(path: Path, seconds: float, freq: int) -> None:
    tone = ["synth", str(seconds), "sine", str(freq)]
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(path), *tone], check=True)


@pytest.fixture
def clips(request: pytest.FixtureRequest) -> Path:
    """The proxy tests' workdir (its out/ writable by the app) with the clips these upload."""
    base = request.getfixturevalue("workdir")
    assert isinstance(base, Path)
    _sox(base / "short.wav", 0.1, 440)  # 17,640 bytes: the count cap comes first
    _sox(base / "long.wav", 25, 440)  # 4.4 MB: over the 4 MiB byte cap alone
    _sox(base / "app.wav", 0.2, 880)
    _sox(base / "desktop.wav", 0.5, 660)
    return base


@pytest.fixture
def proxy(server: PulseServer, clips: Path, app_id: str) -> Iterator[PulseProxy]:
    """The app's proxy as the provider starts it: its caps in a per-app shared dir."""
    sock_dir = clips / "pulse"
    sock_dir.mkdir()
    os.chown(sock_dir, APP_UID, APP_UID)
    write_client_conf(sock_dir / "client.conf")
    p = PulseProxy(
        sock_dir / "native",
        Path(server.socket_path),
        AudioGrant(app_id, "Samples"),
        owner_uid=APP_UID,
        shared_dir=clips / "app-runtime",
    )
    p.start()
    try:
        yield p
    finally:
        p.stop()


def _pactl(server: PulseServer, *args: str) -> str:
    env = dict(os.environ, PULSE_SERVER=server.server)
    done = subprocess.run(
        ["pactl", *args], env=env, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout


def _samples(server: PulseServer) -> dict[str, str]:
    """name -> its whole `pactl list samples` block, on the host's server."""
    blocks = re.split(r"\n(?=Sample #)", _pactl(server, "list", "samples"))
    out: dict[str, str] = {}
    for block in blocks:
        m = re.search(r"^\s*Name: (\S+)", block, re.M)
        if m:
            out[m.group(1)] = block
    return out


def _server_rss_kib(server: PulseServer) -> int:
    """VmRSS of the server process (found by SO_PEERCRED on its socket)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(server.socket_path)
        raw = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", raw)[0]
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert m, status
    return int(m.group(1))


UPLOADS = (
    "pactl upload-sample /media/long.wav long 2>&1; echo LONG=$?; "
    "i=0; ok=0; while [ $i -lt 400 ]; do "
    "pactl upload-sample /media/short.wav s$i 2>/dev/null && ok=$((ok+1)); i=$((i+1)); done; "
    "echo OK=$ok"
)


def test_400_uploads_stop_at_the_cap_and_are_gone_after_exit(  # noqa: PLR0917 - fixtures
    docker_client: docker.DockerClient,
    tools_image: str,
    server: PulseServer,
    proxy: PulseProxy,
    clips: Path,
    app_id: str,
) -> None:
    before = set(_samples(server))
    rss_before = _server_rss_kib(server)
    rc, out = _run(docker_client, tools_image, clips, UPLOADS)
    during = set(_samples(server)) - before
    rss_during = _server_rss_kib(server)
    proxy.stop()
    after = set(_samples(server)) - before
    rss_after = _server_rss_kib(server)
    print(f"server VmRSS KiB: before {rss_before}, at the cap {rss_during}, after {rss_after}")
    assert rc == 0, out
    assert "LONG=0" not in out and "too large" in out.lower(), out
    assert f"OK={DEFAULT_MAX_SAMPLES}" in out, out
    # Every new name on the server is in the app's namespace (none is `s0` or `long`).
    assert during == {sample_name(app_id, f"s{i}") for i in range(DEFAULT_MAX_SAMPLES)}
    assert after == set(), "the app's samples left the server with its last instance"
    assert rss_during - rss_before < 16 * 1024, "at most ~4 MiB of samples, not hundreds of MB"


DESKTOP_SCRIPT = (
    f"pactl remove-sample {DESKTOP} 2>&1; echo RM0=$?; "
    f"pactl upload-sample /media/app.wav {DESKTOP} 2>&1; echo UP=$?; "
    f"pactl play-sample {DESKTOP} {SINK} 2>&1; echo PLAYOWN=$?; "
    f"pactl remove-sample {DESKTOP} 2>&1; echo RM1=$?; "
    f"pactl remove-sample {DESKTOP} 2>&1; echo RM2=$?; "
    f"pactl play-sample {DESKTOP} {SINK} 2>&1; echo PLAY=$?; "
    "pactl list samples short; echo LISTED"
)


@pytest.fixture
def desktop_sample(server: PulseServer, clips: Path) -> Iterator[str]:
    """The desktop's event sound, uploaded on the host server; removed afterwards."""
    existed = DESKTOP in _samples(server)
    _pactl(server, "upload-sample", str(clips / "desktop.wav"), DESKTOP)
    try:
        yield _samples(server)[DESKTOP]
    finally:
        if not existed:
            _pactl(server, "remove-sample", DESKTOP)


def _status(out: str, key: str) -> int:
    m = re.search(rf"^{key}=(\d+)$", out, re.M)
    assert m, out
    return int(m.group(1))


def test_the_desktop_sample_is_untouched_and_still_playable(  # noqa: PLR0917 - fixtures
    docker_client: docker.DockerClient,
    tools_image: str,
    server: PulseServer,
    desktop_sample: str,
    proxy: PulseProxy,
    clips: Path,
    app_id: str,
) -> None:
    rc, out = _run(docker_client, tools_image, clips, DESKTOP_SCRIPT)
    after = _samples(server)
    proxy.stop()
    assert rc == 0, out
    assert _status(out, "RM0") != 0 and "denied" in out.lower(), out
    assert _status(out, "UP") == 0, "the app may upload under that name: its own copy"
    assert _status(out, "PLAYOWN") == 0, out
    assert _status(out, "RM1") == 0, "and remove its own copy"
    assert _status(out, "RM2") != 0, "but never the desktop's"
    assert _status(out, "PLAY") == 0, "the desktop's event sound still plays for the app"
    assert after[DESKTOP] == desktop_sample, "the desktop's sample is byte for byte the same"
    assert sample_name(app_id, DESKTOP) not in after
    listed = out.split("PLAY=")[1]
    assert DESKTOP not in listed.split("LISTED")[0], "the app sees no sample list"
