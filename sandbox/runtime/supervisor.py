"""The detached supervisor: a double-forked process that owns one instance; never prints.

It launches, reports one typed message (Started or Failed) back over a pipe, then waits for
the app and tears down. The providers (audio proxy thread, X11 holding connection, hotplug
watcher) live in it, so they outlive the caller; its launcher token names it, so gc treats a
killed supervisor like a killed launcher (container removed, cookie revoked).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sandbox.errors import (
    CgroupError,
    CgroupUnavailableError,
    ComponentUnavailableError,
    EngineUnavailableError,
    LaunchError,
    PolicyError,
    ProbeError,
    ProviderError,
    SandboxError,
)
from sandbox.runtime import instances


class Supervised(Protocol):
    """What the supervisor holds: the running instance it waits for and tears down."""

    @property
    def instance_dir(self) -> Path: ...

    def stop_in_background(self) -> None: ...

    def wait(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Started:
    """The app runs; its instance dir is where the caller finds it."""

    instance_dir: Path


@dataclass(frozen=True)
class Failed:
    """The launch failed; the caller raises `kind(error)`."""

    error: str
    kind: type[SandboxError]


Report = Started | Failed

# The errors that cross the pipe as themselves; any other failure arrives as its nearest listed
# class (so its exit status by cause survives the pipe), else as a LaunchError.
_KINDS: dict[str, type[SandboxError]] = {
    k.__name__: k
    for k in (
        LaunchError,
        ProviderError,
        PolicyError,
        ProbeError,
        CgroupError,
        CgroupUnavailableError,
        EngineUnavailableError,
        ComponentUnavailableError,
    )
}


def failed(exc: BaseException) -> Failed:
    kind = next((k for k in type(exc).__mro__ if k.__name__ in _KINDS), LaunchError)
    return Failed(str(exc), _KINDS.get(kind.__name__, LaunchError))


def encode(report: Report) -> bytes:
    if isinstance(report, Started):
        return json.dumps({"instance_dir": str(report.instance_dir)}).encode()
    return json.dumps({"error": report.error, "kind": report.kind.__name__}).encode()


def decode(data: bytes) -> Report | None:
    """The supervisor's report; None when it ended without one (or wrote something else)."""
    try:
        raw = json.loads(data or b"{}")
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    if "error" in raw:
        return Failed(str(raw["error"]), _KINDS.get(str(raw.get("kind")), LaunchError))
    if "instance_dir" in raw:
        return Started(Path(raw["instance_dir"]))
    return None


def start_detached(launch: Callable[[], Supervised]) -> tuple[instances.Instance, str]:
    """Fork a supervisor (double fork, own session) that runs `launch` and waits; return the
    instance and its container id once the app runs."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked children
        code = 1
        try:
            os.close(read_fd)
            os.setsid()  # no controlling terminal: the user's Ctrl-C never reaches it
            code = 0 if os.fork() != 0 else supervise(launch, write_fd)
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        os.waitpid(pid, 0)
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    return started_instance(decode(b"".join(chunks)))


def started_instance(report: Report | None) -> tuple[instances.Instance, str]:
    """The instance a report names, or the error it carries, raised."""
    if isinstance(report, Failed):
        raise report.kind(report.error)
    if report is None:
        raise LaunchError("the detached supervisor ended before the app started")
    inst = instances.load(report.instance_dir)
    if inst is None or not inst.state.container_id:
        raise LaunchError(f"the detached instance at {report.instance_dir} is already gone")
    return inst, inst.state.container_id


def supervise(launch: Callable[[], Supervised], report_fd: int) -> int:
    """The supervisor's body: launch, report on report_fd, then wait for the app and tear
    down. SIGTERM stops the app (teardown still runs)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # Every other inherited fd goes: a caller's pipe held open here would block its reader.
    os.closerange(3, report_fd)
    os.closerange(report_fd + 1, 65536)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        session = launch()
    except BaseException as exc:  # reported to the caller, who raises it
        _report(report_fd, failed(exc))
        return 1
    signal.signal(signal.SIGTERM, lambda _n, _f: session.stop_in_background())
    _report(report_fd, Started(session.instance_dir))
    try:
        session.wait()
    except SandboxError:
        session.close()
    return 0


def _report(fd: int, report: Report) -> None:
    try:
        os.write(fd, encode(report))
    finally:
        os.close(fd)
