"""Integration: the per-app pulse proxy in front of pipewire-pulse instead of PulseAudio.

The harness installs PipeWire; each test starts its own private pipewire + wireplumber +
pipewire-pulse under a D-Bus session. Missing binaries fail the test in CI (skip elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pulsectl
import pytest

from integration.components import (
    PulseServer,
    app_sink_inputs,
    missing,
    poll,
    private_pipewire_pulse,
)
from integration.containers import APP_UID
from integration.test_audio_pulse_proxy import APP_ID, RECORD, _peak, _proxy, _run, pulse_client
from sandbox.policy.facts import AudioServerKind
from sandbox.probes import pulse as pulse_probe
from sandbox.providers.pulse.protocol import (
    AUTH_FLAG_MEMFD,
    AUTH_FLAG_SHM,
    COOKIE_LENGTH,
    PROTOCOL_VERSION_MASK,
    Command,
    FrameDecoder,
    Packet,
    parse_packet,
)
from sandbox.providers.pulse.tagstruct import U32, Arbitrary

pytestmark = [pytest.mark.integration]

SINK = "test_null"
MIC = "test_mic"
BINARIES = ("dbus-run-session", "pipewire", "wireplumber", "pipewire-pulse", "pactl", "pw-dump")


@pytest.fixture(scope="module")
def pipewire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    """pipewire-pulse with a null sink and a virtual (non-monitor) source, defaults set."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        missing(f"PipeWire is not installed: {', '.join(absent)}")
    tmp = tmp_path_factory.mktemp("pipewire")
    with private_pipewire_pulse(tmp) as server:
        env = dict(os.environ, **server.env)
        for args in (
            ["load-module", "module-null-sink", f"sink_name={SINK}"],
            [
                "load-module",
                "module-null-sink",
                "media.class=Audio/Source/Virtual",
                f"sink_name={MIC}",
            ],
            ["set-default-sink", SINK],
            ["set-default-source", MIC],
        ):
            subprocess.run(["pactl", *args], env=env, check=True, capture_output=True, timeout=5)
        address = server.env["PULSE_SERVER"]
        yield PulseServer(address, address.removeprefix("unix:"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, APP_UID, APP_UID)
    tone = str(tmp_path / "tone.wav")
    subprocess.run(
        ["sox", "-n", "-r", "48000", "-c", "2", tone, "synth", "2", "sine", "440", "vol", "0.5"],
        check=True,
    )
    return tmp_path


def _auth_reply(path: str) -> int:
    """The version word a server (or the proxy) answers to an AUTH asking for SHM and memfd."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        word = 35 | AUTH_FLAG_SHM | AUTH_FLAG_MEMFD
        s.sendall(Packet(Command.AUTH, 0, (U32(word), Arbitrary(bytes(COOKIE_LENGTH)))).encode())
        decoder = FrameDecoder(1 << 20, 1 << 20)
        while True:
            data = s.recv(65536)
            assert data, "the server hung up on a well-formed AUTH"
            for frame in decoder.feed(data):
                reply = parse_packet(frame)
                assert reply.command == Command.REPLY and isinstance(reply.args[0], U32)
                return reply.args[0].value


def test_probe_and_auth_see_pipewire_through_the_proxy(
    pipewire: PulseServer, workdir: Path
) -> None:
    proxy = _proxy(pipewire, workdir, record=False)
    proxied = str(workdir / "pulse/native")
    try:
        direct_facts = pulse_probe.probe({"PULSE_SERVER": pipewire.server}, 3.0)
        proxied_facts = pulse_probe.probe({"PULSE_SERVER": f"unix:{proxied}"}, 3.0)
        direct_word = _auth_reply(pipewire.socket_path)
        proxied_word = _auth_reply(proxied)
    finally:
        proxy.stop()
    assert direct_facts.server is AudioServerKind.PIPEWIRE, direct_facts
    assert proxied_facts.server is AudioServerKind.PIPEWIRE, proxied_facts
    assert proxied_facts.server_name == direct_facts.server_name
    assert direct_word & PROTOCOL_VERSION_MASK >= 35
    assert proxied_word & PROTOCOL_VERSION_MASK == 35
    assert not proxied_word & (AUTH_FLAG_SHM | AUTH_FLAG_MEMFD), "the proxy never offers SHM"


def _pw_nodes(env: dict[str, str], app_id: str) -> list[dict[str, object]]:
    dump = subprocess.run(["pw-dump"], env=env, capture_output=True, timeout=10, check=True)
    nodes: list[dict[str, object]] = []
    for obj in json.loads(dump.stdout):
        props = (obj.get("info") or {}).get("props") or {}
        if obj.get("type") == "PipeWire:Interface:Node" and props.get("application.id") == app_id:
            nodes.append(props)
    return nodes


def test_container_playback_reaches_pipewire_with_host_identity(
    docker_client: docker.DockerClient, tools_image: str, pipewire: PulseServer, workdir: Path
) -> None:
    proxy = _proxy(pipewire, workdir, record=False)
    runtime = str(Path(pipewire.socket_path).parent.parent)
    pw_env = dict(os.environ, XDG_RUNTIME_DIR=runtime, PULSE_SERVER=pipewire.server)
    recorder = subprocess.Popen(
        ["parecord", f"--device={SINK}.monitor", str(workdir / "monitor.wav")], env=pw_env
    )
    seen: list[dict[str, str]] = []
    nodes: list[dict[str, object]] = []
    try:
        container = docker_client.containers.run(
            tools_image,
            ["paplay", f"--device={SINK}", "/media/tone.wav"],
            detach=True,
            **pulse_client(workdir),
        )
        try:
            with pulsectl.Pulse("sandbox-test", server=pipewire.server) as pulse:
                seen = poll(lambda: app_sink_inputs(pulse, APP_ID), 10)
            nodes = _pw_nodes(pw_env, APP_ID)
            props = seen[0] if seen else {}
            pid = int(props.get("application.process.id", "0"))
            host_comm = Path(f"/proc/{pid}/comm").read_text().strip() if pid else ""
            status = container.wait(timeout=30)
            assert int(status["StatusCode"]) == 0, container.logs().decode()
        finally:
            container.remove(force=True)
    finally:
        recorder.terminate()
        recorder.wait(5)
        proxy.stop()
    assert seen, "the container's stream appeared as a sink input of pipewire-pulse"
    assert props["application.name"] == "Example Game"
    assert host_comm == "paplay", "application.process.id is the HOST pid of the container's paplay"
    assert nodes and str(nodes[0].get("application.process.id")) == str(pid), nodes
    assert _peak(workdir / "monitor.wav") > 1000, "the tone reached PipeWire's null sink"


@pytest.mark.parametrize("record", [False, True], ids=["playback-only", "record-grant"])
def test_record_grant_and_monitors_on_pipewire(
    docker_client: docker.DockerClient,
    tools_image: str,
    pipewire: PulseServer,
    workdir: Path,
    record: bool,
) -> None:
    proxy = _proxy(pipewire, workdir, record=record)
    try:
        _, real = _run(docker_client, tools_image, workdir, RECORD.format(dev=MIC))
        _, monitor = _run(docker_client, tools_image, workdir, RECORD.format(dev=f"{SINK}.monitor"))
        # pipewire-pulse resolves a SINK name used as a source to that sink's monitor.
        _, sink_name = _run(docker_client, tools_image, workdir, RECORD.format(dev=SINK))
    finally:
        proxy.stop()
    assert ("RUNNING" in real) is record, real
    for out in (monitor, sink_name):
        assert "RUNNING" not in out and "EXIT=" in out, out
    assert "denied" in monitor.lower(), monitor
