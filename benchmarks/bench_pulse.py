"""Benchmark: the PulseAudio proxy against the direct server socket (latency, throughput, CPU)."""

# Usage: python benchmarks/bench_pulse.py [--server /path/to/native] [--rounds 2000]
# Without --server it starts a private PulseAudio (null sink) in a temporary dir, as the
# integration harness does. Prints one table; exits non-zero only when setup fails.

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

from sandbox.providers.pulse.protocol import (
    INVALID_INDEX,
    PROTOCOL_VERSION,
    Command,
    Frame,
    FrameDecoder,
    Packet,
    parse_packet,
)
from sandbox.providers.pulse.proxy import PulseProxy, write_client_conf
from sandbox.providers.pulse.rules import AudioGrant
from sandbox.providers.pulse.tagstruct import (
    U8,
    U32,
    Arbitrary,
    Bool,
    ChannelMap,
    CVolume,
    Proplist,
    SampleSpec,
    Str,
    prop_str,
)

RATE, CHANNELS, SAMPLE_S16LE = 48000, 2, 3
BYTES_PER_SECOND = RATE * CHANNELS * 2


class RawClient:
    """A minimal blocking native-protocol client: enough to time commands and push audio."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.dec = FrameDecoder(1 << 24, 1 << 24)
        self.tag = 0
        self.backlog: list[Packet] = []
        self.call(Command.AUTH, (U32(PROTOCOL_VERSION), Arbitrary(bytes(256))))
        self.call(Command.SET_CLIENT_NAME, (Proplist((("application.name", prop_str("bench")),)),))

    def call(self, command: int, args: tuple = ()) -> Packet:  # type: ignore[type-arg]
        self.tag += 1
        tag = self.tag
        self.sock.sendall(Packet(command, tag, args).encode())
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("server closed the connection")
            for f in self.dec.feed(data):
                if f.is_control:
                    p = parse_packet(f)
                    if p.tag == tag:
                        if p.command != Command.REPLY:
                            raise ConnectionError(f"command {command} failed: {p.args}")
                        return p

    def playback_stream(self) -> int:
        args = (
            SampleSpec(SAMPLE_S16LE, CHANNELS, RATE),
            ChannelMap((1, 2)),
            U32(INVALID_INDEX),
            Str(None),
            U32(1 << 24),
            Bool(False),
            U32(1 << 22),
            U32(INVALID_INDEX),
            U32(INVALID_INDEX),
            U32(0),
            CVolume((0x10000, 0x10000)),
            *(Bool(False),) * 7,
            Bool(False),
            Bool(False),
            Proplist((("media.name", prop_str("bench")),)),
            *(Bool(False),) * 7,  # v14, v15, v17, v18 flags
            U8(0),  # v21: no extra formats
        )
        reply = self.call(Command.CREATE_PLAYBACK_STREAM, args)
        channel = reply.args[0]
        assert isinstance(channel, U32)
        return channel.value

    def close(self) -> None:
        self.sock.close()


def latency(path: str, rounds: int) -> list[float]:
    c = RawClient(path)
    for _ in range(50):
        c.call(Command.GET_SERVER_INFO)
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        c.call(Command.GET_SERVER_INFO)
        out.append((time.perf_counter() - t0) * 1000)
    c.close()
    return out


def throughput(path: str, seconds_of_audio: float) -> float:
    """Times real time: 48 kHz stereo s16 pushed through (and acknowledged by a round trip)."""
    c = RawClient(path)
    channel = c.playback_stream()
    block = Frame(channel, 0, 0, bytes(65536)).encode()
    blocks = int(seconds_of_audio * BYTES_PER_SECOND / 65536)
    t0 = time.perf_counter()
    for _ in range(blocks):
        c.sock.sendall(block)
    c.call(Command.GET_SERVER_INFO)  # every block before it has passed the proxy and the server
    elapsed = time.perf_counter() - t0
    c.close()
    return blocks * 65536 / BYTES_PER_SECOND / elapsed


def cpu_per_stream(path: str, conf: Path | None, wav: Path) -> float:
    env = dict(os.environ, PULSE_SERVER=f"unix:{path}")
    if conf is not None:
        env["PULSE_CLIENTCONFIG"] = str(conf)
    c0, w0 = time.process_time(), time.perf_counter()
    subprocess.run(["paplay", str(wav)], env=env, check=True)
    return (time.process_time() - c0) / (time.perf_counter() - w0) * 100


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = tmp / "native"
    proc = subprocess.Popen(
        [
            "pulseaudio",
            "--daemonize=no",
            "--system=false",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--disallow-exit",
            "-n",
            "--log-target=stderr",
            "-L",
            "module-null-sink sink_name=bench_null",
            "-L",
            f"module-native-protocol-unix socket={sock} auth-anonymous=1",
        ],
        env=dict(os.environ, HOME=str(tmp), XDG_RUNTIME_DIR=str(tmp)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if sock.exists():
            return proc, str(sock)
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("pulseaudio did not start")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server")
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--audio-seconds", type=float, default=600.0)
    ap.add_argument("--play-seconds", type=float, default=5.0)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tmp.chmod(0o700)
        server_proc = None
        server = opts.server
        if server is None:
            server_proc, server = start_server(tmp)
        wav = tmp / "tone.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(CHANNELS)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(bytes(int(opts.play_seconds * BYTES_PER_SECOND)))
        conf = write_client_conf(tmp / "client.conf")
        proxy = PulseProxy(tmp / "proxy", Path(server), AudioGrant("bench.App", "Bench"))
        proxy.start()
        try:
            rows = []
            direct_lat = latency(server, opts.rounds)
            proxy_lat = latency(str(tmp / "proxy"), opts.rounds)
            d_med, p_med = statistics.median(direct_lat), statistics.median(proxy_lat)
            d99, p99 = pct(direct_lat, 0.99), pct(proxy_lat, 0.99)
            rows.append(("GET_SERVER_INFO median ms", d_med, p_med, p_med - d_med, "<= 0.5 added"))
            rows.append(("GET_SERVER_INFO p99 ms", d99, p99, p99 - d99, "<= 2 added"))
            d_tp = throughput(server, opts.audio_seconds)
            p_tp = throughput(str(tmp / "proxy"), opts.audio_seconds)
            rows.append(("playback throughput x realtime", d_tp, p_tp, p_tp - d_tp, ">= 100"))
            d_cpu = cpu_per_stream(server, conf, wav)
            p_cpu = cpu_per_stream(str(tmp / "proxy"), conf, wav)
            rows.append(("CPU % of a core, 48k stereo", d_cpu, p_cpu, p_cpu - d_cpu, "< 2"))
        finally:
            proxy.stop()
            if server_proc is not None:
                server_proc.terminate()
                server_proc.wait(5)
    print(f"{'metric':34} {'direct':>10} {'proxy':>10} {'added':>10}  goal")
    for name, a, b, diff, goal in rows:
        print(f"{name:34} {a:10.3f} {b:10.3f} {diff:10.3f}  {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
