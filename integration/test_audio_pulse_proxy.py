"""Integration: the per-app PulseAudio proxy between a hardened container and a real server."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pulsectl
import pytest
from docker.types import Mount

from integration.components import PulseServer, app_sink_inputs, poll
from integration.containers import APP_UID, hardened, run_to_end
from sandbox.providers.pulse.proxy import PulseProxy, write_client_conf
from sandbox.providers.pulse.rules import AudioGrant

pytestmark = pytest.mark.integration

APP_ID = "com.example.Game"
SINK = "test_null"
FIXTURE = Path(__file__).resolve().parent.parent / "tests/providers/pulse/fixtures/paplay.bin"
PROBES = Path(__file__).resolve().parent / "probes"
STORM_SECONDS = 4


@pytest.fixture
def pulse(pulse_server: PulseServer) -> Iterator[pulsectl.Pulse]:
    with pulsectl.Pulse("sandbox-test", server=pulse_server.server) as p:
        yield p


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, APP_UID, APP_UID)
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "44100",
            "-c",
            "2",
            str(tmp_path / "tone.wav"),
            "synth",
            "2",
            "sine",
            "440",
            "vol",
            "0.5",
        ],
        check=True,
    )
    return tmp_path


def _proxy(pulse_server: PulseServer, workdir: Path, record: bool) -> PulseProxy:
    sock_dir = workdir / "pulse"
    sock_dir.mkdir(exist_ok=True)
    os.chown(sock_dir, APP_UID, APP_UID)
    write_client_conf(sock_dir / "client.conf")
    grant = AudioGrant(APP_ID, "Example Game", record=record)
    proxy = PulseProxy(
        sock_dir / "native", Path(pulse_server.socket_path), grant, owner_uid=APP_UID
    )
    proxy.start()
    return proxy


def pulse_client(workdir: Path, *extra: Mount) -> dict[str, Any]:
    """Hardened run arguments of a pulse client of the proxy in `workdir` (its files at /media)."""
    return hardened(
        environment={
            "PULSE_SERVER": "unix:/run/sandbox/pulse/native",
            "PULSE_CLIENTCONFIG": "/run/sandbox/pulse/client.conf",
            "HOME": "/tmp",
        },
        tmpfs={"/tmp": ""},
        mounts=[
            Mount("/run/sandbox/pulse", str(workdir / "pulse"), "bind"),
            Mount("/media", str(workdir), "bind", read_only=True),
            *extra,
        ],
    )


def _run(
    docker_client: docker.DockerClient, image: str, workdir: Path, script: str
) -> tuple[int, str]:
    """`script` in a pulse client container that may write to `workdir`/out (at /out)."""
    out = Mount("/out", str(workdir / "out"), "bind")
    return run_to_end(docker_client, image, ["sh", "-c", script], **pulse_client(workdir, out))


def _peak(path: Path) -> int:
    with wave.open(str(path)) as w:
        frames = w.readframes(w.getnframes())
    samples = memoryview(frames).cast("h") if frames else memoryview(b"").cast("h")
    return max((abs(s) for s in samples), default=0)


def test_playback_reaches_the_sink_with_host_identity(
    docker_client: docker.DockerClient,
    tools_image: str,
    pulse_server: PulseServer,
    pulse: pulsectl.Pulse,
    workdir: Path,
) -> None:
    proxy = _proxy(pulse_server, workdir, record=False)
    rec_path = workdir / "monitor.wav"
    env = dict(os.environ, PULSE_SERVER=pulse_server.server)
    recorder = subprocess.Popen(["parecord", f"--device={SINK}.monitor", str(rec_path)], env=env)
    seen: list[dict[str, str]] = []
    try:
        container = docker_client.containers.run(
            tools_image,
            ["paplay", f"--device={SINK}", "/media/tone.wav"],
            detach=True,
            **pulse_client(workdir),
        )
        try:
            seen = poll(lambda: app_sink_inputs(pulse, APP_ID), 10)
            props = seen[0] if seen else {}
            pid = int(props.get("application.process.id", "0"))
            host_comm = Path(f"/proc/{pid}/comm").read_text().strip() if pid else ""
            host_cgroup = Path(f"/proc/{pid}/cgroup").read_text() if pid else ""
            assert int(container.wait(timeout=30)["StatusCode"]) == 0, container.logs().decode()
            container_id = container.id
        finally:
            container.remove(force=True)
    finally:
        recorder.terminate()
        recorder.wait(5)
        proxy.stop()
    assert seen, "the container's stream appeared on the host server"
    assert props["application.name"] == "Example Game"
    assert host_comm == "paplay", "application.process.id is a HOST pid of the container's paplay"
    assert container_id is not None and container_id in host_cgroup
    assert _peak(rec_path) > 1000, "the host recorded the tone from the sink's monitor"


@pytest.fixture
def mic(pulse: pulsectl.Pulse) -> Iterator[str]:
    index = pulse.module_load("module-sine-source", "source_name=test_mic frequency=440")
    yield "test_mic"
    pulse.module_unload(index)


RECORD = (
    "parecord --device={dev} /out/{dev}.wav & p=$!; sleep 2; "
    "if kill $p 2>/dev/null; then wait $p; echo RUNNING; else wait $p; echo EXIT=$?; fi"
)


@pytest.mark.parametrize("record", [False, True], ids=["playback-only", "record-grant"])
def test_record_needs_the_grant_and_never_gets_a_monitor(  # noqa: PLR0917 - pytest fixtures
    docker_client: docker.DockerClient,
    tools_image: str,
    pulse_server: PulseServer,
    mic: str,
    workdir: Path,
    record: bool,
) -> None:
    proxy = _proxy(pulse_server, workdir, record=record)
    try:
        _, real = _run(docker_client, tools_image, workdir, RECORD.format(dev=mic))
        _, monitor = _run(docker_client, tools_image, workdir, RECORD.format(dev=f"{SINK}.monitor"))
    finally:
        proxy.stop()
    assert ("RUNNING" in real) is record, real
    assert "RUNNING" not in monitor and "denied" in monitor.lower(), monitor
    if record:
        assert _peak(workdir / f"out/{mic}.wav") > 1000


def test_module_loading_is_refused(
    docker_client: docker.DockerClient,
    tools_image: str,
    pulse_server: PulseServer,
    pulse: pulsectl.Pulse,
    workdir: Path,
) -> None:
    before = {m.name for m in pulse.module_list()}
    proxy = _proxy(pulse_server, workdir, record=True)
    try:
        rc, out = _run(
            docker_client,
            tools_image,
            workdir,
            "pactl load-module module-native-protocol-tcp auth-anonymous=1",
        )
        info_rc, info = _run(docker_client, tools_image, workdir, "pactl info")
    finally:
        proxy.stop()
    assert rc != 0 and "denied" in out.lower(), out
    assert {m.name for m in pulse.module_list()} == before
    assert info_rc == 0 and "Server Name" in info


def _mutated(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 20)):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf)


def test_garbage_clients_leave_others_undisturbed(
    pulse_server: PulseServer,
    workdir: Path,
    pulse: pulsectl.Pulse,
) -> None:
    proxy = _proxy(pulse_server, workdir, record=False)
    env_direct = dict(os.environ, PULSE_SERVER=pulse_server.server)
    env_proxy = dict(
        os.environ,
        PULSE_SERVER=f"unix:{workdir / 'pulse/native'}",
        PULSE_CLIENTCONFIG=str(workdir / "pulse/client.conf"),
    )
    tone = str(workdir / "tone.wav")
    bystander = subprocess.Popen(["paplay", f"--device={SINK}", tone], env=env_direct)
    neighbour = subprocess.Popen(["paplay", f"--device={SINK}", tone], env=env_proxy)
    rng = random.Random(1234)
    captured = FIXTURE.read_bytes()
    # The fixture's client bytes (records marked C), mutated, and plain random bytes.
    client_bytes = bytearray()
    pos = 0
    while pos < len(captured):
        n = int.from_bytes(captured[pos + 1 : pos + 5], "big")
        if captured[pos : pos + 1] == b"C":
            client_bytes += captured[pos + 5 : pos + 5 + n]
        pos += 5 + n
    try:
        for i in range(40):
            payload = _mutated(bytes(client_bytes), rng) if i % 2 else rng.randbytes(4096)
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(workdir / "pulse/native"))
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    while s.recv(65536):
                        pass
                except OSError:
                    pass
        assert bystander.wait(20) == 0
        assert neighbour.wait(20) == 0
        after = subprocess.run(["paplay", f"--device={SINK}", tone], env=env_proxy, check=False)
        assert after.returncode == 0, "the proxy still serves new clients"
        assert proxy.closed_for_violation > 0
        assert pulse.server_info().server_name
    finally:
        for p in (bystander, neighbour):
            if p.poll() is None:
                p.kill()
        proxy.stop()


def _tone(path: Path, seconds: float) -> str:
    subprocess.run(
        ["sox", "-n", "-r", "44100", "-c", "2", str(path), "synth", str(seconds), "sine", "440"],
        check=True,
    )
    return str(path)


def _streams_of(pulse: pulsectl.Pulse, pids: dict[str, int]) -> dict[str, Any]:
    """name -> sink input of the process with that pid (application.process.id is the host pid)."""
    by_pid = {si.proplist.get("application.process.id"): si for si in pulse.sink_input_list()}
    return {name: by_pid[str(pid)] for name, pid in pids.items() if str(pid) in by_pid}


def test_hostile_container_leaves_server_and_other_clients_playing(
    docker_client: docker.DockerClient,
    base_image: str,
    pulse_server: PulseServer,
    pulse: pulsectl.Pulse,
    workdir: Path,
) -> None:
    """Random, mutated, oversized and truncated frames, and garbage after a valid AUTH, sent from
    inside a hardened container, cost only the hostile connections."""
    proxy = _proxy(pulse_server, workdir, record=False)
    capture = workdir / "capture"
    capture.mkdir(mode=0o755)
    shutil.copy(FIXTURE, capture / "session.bin")
    (capture / "session.bin").chmod(0o644)
    tone = _tone(workdir / "long.wav", STORM_SECONDS + 5)
    env_direct = dict(os.environ, PULSE_SERVER=pulse_server.server)
    env_proxy = dict(
        os.environ,
        PULSE_SERVER=f"unix:{workdir / 'pulse/native'}",
        PULSE_CLIENTCONFIG=str(workdir / "pulse/client.conf"),
    )
    players = {
        "direct": subprocess.Popen(["paplay", f"--device={SINK}", tone], env=env_direct),
        "proxied": subprocess.Popen(["paplay", f"--device={SINK}", tone], env=env_proxy),
    }
    pids = {name: p.pid for name, p in players.items()}
    container = None
    try:
        deadline = time.monotonic() + 5
        streams = _streams_of(pulse, pids)
        while len(streams) < len(pids) and time.monotonic() < deadline:
            time.sleep(0.05)
            streams = _streams_of(pulse, pids)
        assert set(streams) == set(pids), "both players have a sink input before the storm"
        indexes = {name: si.index for name, si in streams.items()}
        container = docker_client.containers.run(
            base_image,
            [
                "python3",
                "-B",
                "/probe/pulse_storm.py",
                "/run/sandbox/pulse/native",
                "/capture/session.bin",
                str(STORM_SECONDS),
                "20240611",
            ],
            detach=True,
            **hardened(
                mounts=[
                    Mount("/run/sandbox/pulse", str(workdir / "pulse"), "bind"),
                    Mount("/probe", str(PROBES), "bind", read_only=True),
                    Mount("/capture", str(capture), "bind", read_only=True),
                ],
            ),
        )
        # While the storm runs: the same two sink inputs, playing, and a server that answers.
        samples = 0
        info_ok = 0
        info_errors: list[str] = []
        storm_deadline = time.monotonic() + STORM_SECONDS + 15
        while container.status != "exited" or samples == 0:
            assert time.monotonic() < storm_deadline, "the storm container did not end in time"
            now = _streams_of(pulse, pids)
            assert {n: si.index for n, si in now.items()} == indexes, "a player lost its stream"
            assert not any(si.corked for si in now.values()), "a player was corked"
            assert all(p.poll() is None for p in players.values()), "a player ended early"
            info = subprocess.run(
                ["pactl", "info"], env=env_direct, capture_output=True, timeout=5, check=False
            )
            if info.returncode == 0 and b"Server Name" in info.stdout:
                info_ok += 1
            else:
                info_errors.append(info.stderr.decode(errors="replace").strip())
            samples += 1
            time.sleep(0.2)
            container.reload()
        status = container.wait(timeout=15)
        logs = container.logs().decode()
        assert int(status["StatusCode"]) == 0, logs
        report = json.loads(logs.strip().splitlines()[-1])
        for name, player in players.items():
            assert player.wait(STORM_SECONDS + 10) == 0, f"{name} player did not finish cleanly"
        after = subprocess.run(
            ["paplay", f"--device={SINK}", _tone(workdir / "short.wav", 0.3)],
            env=env_proxy,
            timeout=10,
            check=False,
        )
    finally:
        if container is not None:
            container.remove(force=True)
        for p in players.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        proxy.stop()
    assert samples >= 5 and info_ok == samples, f"pactl info failed in the storm: {info_errors}"
    assert set(report["kinds"]) >= {
        "random-bytes",
        "random-frames",
        "mutated",
        "oversized",
        "truncated",
        "auth-then-garbage",
        "ready-then-garbage",
    }
    assert report["connections"] >= 20 and report["refused_connect"] == 0, report
    assert report["auth_replies"] > 0, "valid AUTHs reached the server through the proxy"
    assert report["closed_by_proxy"] > 0 and proxy.closed_for_violation > 0, report
    assert after.returncode == 0, "a new proxy client still plays after the storm"
    assert pulse.server_info().server_name
