"""Test-side helpers for real components: skip-or-fail policy, pings, private throwaway servers."""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import pytest

if TYPE_CHECKING:
    import pulsectl

X11_SOCKET_DIR = Path("/tmp/.X11-unix")
START_TIMEOUT_S = 15.0

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(what: str) -> NoReturn:
    """A component the test needs is absent: an error in CI, a skip on a developer's machine."""
    message = f"{what} (start the components with: ./integration/harness.sh run -- <pytest ...>)"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"'{name}' is not installed")
    return path


@dataclass(frozen=True)
class X11Display:
    display: str  # ":99"
    xauthority: str | None  # the trusted cookie file of the server
    socket_path: str  # "/tmp/.X11-unix/X99"


@dataclass(frozen=True)
class WaylandDisplay:
    display: str  # "wayland-sandbox"
    runtime_dir: str  # XDG_RUNTIME_DIR
    socket_path: str


@dataclass(frozen=True)
class PulseServer:
    server: str  # "unix:/tmp/sandbox-harness/pulse/native", as PULSE_SERVER takes it
    socket_path: str


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, enough for the engines' /_ping and /images endpoints."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def engine_get(base_url: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET `path` from an engine at a docker-style base url (unix:///x.sock or tcp://host:port)."""
    conn: http.client.HTTPConnection
    if base_url.startswith("unix://"):
        conn = _UnixHTTPConnection(base_url.removeprefix("unix://"), timeout)
    elif base_url.startswith(("tcp://", "http://")):
        hostport = base_url.split("://", 1)[1].rstrip("/")
        conn = http.client.HTTPConnection(hostport, timeout=timeout)
    else:
        raise ValueError(f"unsupported engine url {base_url!r}")
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def engine_answers(base_url: str) -> str | None:
    """None when the engine answers /_ping with 200, else why not."""
    try:
        status, body = engine_get(base_url, "/_ping")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if status == 200 else f"/_ping answered {status} {body[:80]!r}"


def x11_answers(display: str, xauthority: str | None) -> str | None:
    """None when a client can open `display` (xdpyinfo-level: setup + auth), else why not."""
    env = dict(os.environ, DISPLAY=display)
    if xauthority is not None:
        env["XAUTHORITY"] = xauthority
    xdpyinfo = shutil.which("xdpyinfo")
    argv = (
        [xdpyinfo, "-display", display]
        if xdpyinfo
        else ["python3", "-c", f"from Xlib import display; display.Display({display!r}).close()"]
    )
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        return "no answer within 5 s"
    if proc.returncode != 0:
        return proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
    return None


def poll(probe: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """`probe()` again every `interval` s until its value is truthy or `timeout` s pass; that value.

    Never fails by itself: the caller asserts on what it got, with its own message.
    """
    deadline = time.monotonic() + timeout
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value


def wait_until(
    pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition", interval: float = 0.05
) -> None:
    """Return once `pred()` holds; an AssertionError naming `what` if not within `timeout` s."""
    if not poll(pred, timeout, interval):
        raise AssertionError(f"{what} not met in {timeout:g} s")


def app_sink_inputs(pulse: pulsectl.Pulse, app_id: str) -> list[dict[str, str]]:
    """The proplists of the server's sink inputs whose application.id is `app_id`."""
    return [
        dict(si.proplist)
        for si in pulse.sink_input_list()
        if si.proplist.get("application.id") == app_id
    ]


def unix_socket_accepts(path: str) -> str | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
        except OSError as exc:
            return f"{path}: {exc}"
    return None


def _wait(
    what: str, proc: subprocess.Popen[bytes], log: Path, not_ready: Callable[[], str | None]
) -> None:
    """Poll `not_ready` (None once the server answers) until it answers, exits or times out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not_ready() is not None:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {START_TIMEOUT_S:g} s: {_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-8:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class PrivateServer:
    """A server this test started; `env` points a client at it; stop() ends only this process."""

    name: str
    env: Mapping[str, str]
    proc: subprocess.Popen[bytes] = field(repr=False, compare=False)
    leftovers: tuple[Path, ...] = ()  # files a killed server leaves behind

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        for path in self.leftovers:
            path.unlink(missing_ok=True)


def _spawn(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def free_display_number(first: int, last: int) -> int:
    for n in range(first, last):
        if not (X11_SOCKET_DIR / f"X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError(f"no free X display number in :{first}-:{last - 1}")


@contextlib.contextmanager
def private_xvfb(tmp: Path) -> Iterator[PrivateServer]:
    """A second Xvfb (display :200 and up) with its own cookie; never the harness's server."""
    xvfb = require_binary("Xvfb")
    xauth_bin = require_binary("xauth")
    xauthority = tmp / "xauth"
    for _attempt in range(5):
        n = free_display_number(200, 300)
        subprocess.run(
            [
                xauth_bin,
                "-q",
                "-f",
                str(xauthority),
                "add",
                f":{n}",
                "MIT-MAGIC-COOKIE-1",
                secrets.token_hex(16),
            ],
            check=True,
        )
        log = tmp / f"xvfb-{n}.log"
        proc = _spawn(
            [xvfb, f":{n}", "-auth", str(xauthority), "-nolisten", "tcp", "-noreset"],
            os.environ,
            log,
        )
        server = PrivateServer(
            "Xvfb",
            {"DISPLAY": f":{n}", "XAUTHORITY": str(xauthority)},
            proc,
            (X11_SOCKET_DIR / f"X{n}", Path(f"/tmp/.X{n}-lock")),
        )
        try:
            _wait("Xvfb", proc, log, functools.partial(x11_answers, f":{n}", str(xauthority)))
        except RuntimeError:
            if "already active" not in _tail(log):
                server.cleanup()
                raise
            # Lost a race for :n: the socket and lock belong to the other server, keep them.
            server.stop(signal.SIGKILL)
            continue
        try:
            yield server
        finally:
            server.cleanup()
        return
    raise RuntimeError("could not start a private Xvfb")


@contextlib.contextmanager
def private_weston(tmp: Path) -> Iterator[PrivateServer]:
    """A second headless Weston in its own XDG_RUNTIME_DIR."""
    weston = require_binary("weston")
    runtime = tmp / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    name = "wayland-private"
    log = tmp / "weston.log"
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    proc = _spawn(
        [weston, "--backend=headless-backend.so", f"--socket={name}", "--idle-time=0"], env, log
    )
    socket_path = runtime / name
    server = PrivateServer(
        "weston",
        {"WAYLAND_DISPLAY": name, "XDG_RUNTIME_DIR": str(runtime)},
        proc,
        (socket_path, runtime / f"{name}.lock"),
    )
    try:
        _wait("weston", proc, log, functools.partial(unix_socket_accepts, str(socket_path)))
        yield server
    finally:
        server.cleanup()


def _pactl_answers(pactl: str, server_env: Mapping[str, str]) -> str | None:
    """None when `pactl info` gets an answer from the server `server_env` names, else why not."""
    probe = subprocess.run(
        [pactl, "info"],
        env=dict(os.environ, **server_env),
        capture_output=True,
        timeout=5,
        check=False,
    )
    return None if probe.returncode == 0 else probe.stderr.decode(errors="replace")


@contextlib.contextmanager
def private_pulseaudio(tmp: Path) -> Iterator[PrivateServer]:
    """A second PulseAudio with a null sink and an anonymous unix socket in `tmp`."""
    pulseaudio = require_binary("pulseaudio")
    pactl = require_binary("pactl")
    home = tmp / "pulse-home"
    runtime = tmp / "pulse-runtime"
    home.mkdir(exist_ok=True)
    runtime.mkdir(mode=0o700, exist_ok=True)
    socket_path = tmp / "pulse.sock"
    log = tmp / "pulseaudio.log"
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(runtime))
    proc = _spawn(
        [
            pulseaudio,
            "--daemonize=no",
            "--system=false",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--disallow-exit",
            "-n",
            "--log-target=stderr",
            "-L",
            "module-null-sink sink_name=private_null",
            "-L",
            f"module-native-protocol-unix socket={socket_path} auth-anonymous=1",
        ],
        env,
        log,
    )
    server_env = {"PULSE_SERVER": f"unix:{socket_path}"}
    server = PrivateServer("pulseaudio", server_env, proc, (socket_path,))
    try:
        _wait("pulseaudio", proc, log, functools.partial(_pactl_answers, pactl, server_env))
        yield server
    finally:
        server.cleanup()


# pipewire needs its socket before its clients start; wireplumber (the session manager that links
# streams to sinks) exits without a D-Bus session bus, hence dbus-run-session around all three.
_PIPEWIRE_SESSION = """
pipewire &
while [ ! -S "$XDG_RUNTIME_DIR/pipewire-0" ]; do sleep 0.02; done
wireplumber &
pipewire-pulse &
wait
"""


@contextlib.contextmanager
def private_pipewire_pulse(tmp: Path) -> Iterator[PrivateServer]:
    """PipeWire + WirePlumber + pipewire-pulse in a private runtime dir and D-Bus session.

    All of them run in one new process group, which is what cleanup signals; `env` points a
    pulse client at pipewire-pulse's socket. Not part of the harness: only opt-in tests use it.
    """
    dbus_run_session = require_binary("dbus-run-session")
    for name in ("pipewire", "wireplumber", "pipewire-pulse"):
        require_binary(name)
    pactl = require_binary("pactl")
    runtime = tmp / "pw-runtime"
    home = tmp / "pw-home"
    runtime.mkdir(mode=0o700, exist_ok=True)
    home.mkdir(exist_ok=True)
    socket_path = runtime / "pulse" / "native"
    log = tmp / "pipewire.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PULSE_SERVER", "DBUS_SESSION_BUS_ADDRESS", "PIPEWIRE_REMOTE")
    }
    env.update(XDG_RUNTIME_DIR=str(runtime), HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [dbus_run_session, "--", "sh", "-c", _PIPEWIRE_SESSION],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server_env = {"PULSE_SERVER": f"unix:{socket_path}"}

    def stop_group() -> None:
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)
                # The group outlives its leader while children exit; wait until it is empty.
                deadline = time.monotonic() + wait_s
                while _group_alive(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _group_alive(proc.pid):
                    return

    try:
        _wait("pipewire-pulse", proc, log, functools.partial(_pactl_answers, pactl, server_env))
        yield PrivateServer("pipewire-pulse", server_env, proc, ())
    finally:
        stop_group()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HungServer:
    """A unix socket that accepts connections and never answers: a wedged server."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(64)
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def hung_server(path: Path) -> Iterator[HungServer]:
    server = HungServer(path)
    try:
        yield server
    finally:
        server.close()
