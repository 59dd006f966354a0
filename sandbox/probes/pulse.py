"""PulseAudio/PipeWire probe: bounded connect, then pulsectl server_info; never loads modules."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sandbox.host.bounded_io import Deadline, Missing, check_unix, run_bounded
from sandbox.policy.facts import AudioFacts, AudioServerKind

SYSTEM_SOCKET = "/run/pulse/native"


@dataclass(frozen=True)
class PulseSocket:
    path: str
    source: str  # "PULSE_SERVER", "XDG_RUNTIME_DIR", "system"


def parse_server_list(value: str) -> PulseSocket | Missing:
    """The first local socket of PULSE_SERVER ("unix:/p", "/p", "{machine}unix:/p", lists)."""
    remote: list[str] = []
    for item in value.split():
        entry = item
        if entry.startswith("{"):  # "{machine-id}addr": libpulse's per-machine prefix
            entry = entry.partition("}")[2]
        if entry.startswith("unix:"):
            entry = entry[len("unix:") :]
        if entry.startswith("/"):
            return PulseSocket(entry, "PULSE_SERVER")
        remote.append(item)
    if remote:
        return Missing(
            f"PULSE_SERVER={value} names only network servers; unsupported: the sandbox proxies "
            "a local socket"
        )
    return Missing("PULSE_SERVER is set but empty")


def resolve_socket(env: Mapping[str, str], exists: Callable[[str], bool]) -> PulseSocket | Missing:
    """PULSE_SERVER, else $XDG_RUNTIME_DIR/pulse/native, else the system-wide socket."""
    server = env.get("PULSE_SERVER", "")
    if server.strip():
        return parse_server_list(server)
    runtime_dir = env.get("XDG_RUNTIME_DIR", "")
    user_socket = os.path.join(runtime_dir, "pulse", "native") if runtime_dir else None
    if user_socket is not None and exists(user_socket):
        return PulseSocket(user_socket, "XDG_RUNTIME_DIR")
    if exists(SYSTEM_SOCKET):
        return PulseSocket(SYSTEM_SOCKET, "system")
    if user_socket is None:
        return Missing(f"PULSE_SERVER and XDG_RUNTIME_DIR are not set and no {SYSTEM_SOCKET}")
    return Missing(f"no audio server socket at {user_socket} (nor {SYSTEM_SOCKET})")


def server_kind(server_name: str) -> AudioServerKind:
    """PipeWire's pulse server calls itself "PulseAudio (on PipeWire X)": check PipeWire first."""
    lowered = server_name.lower()
    if "pipewire" in lowered:
        return AudioServerKind.PIPEWIRE
    if "pulseaudio" in lowered:
        return AudioServerKind.PULSEAUDIO
    return AudioServerKind.OTHER


class ServerInfo(Protocol):
    """The fields of pulsectl's PulseServerInfo that the probe reads (tests pass a fake)."""

    server_name: str
    server_version: str
    default_sink_name: str | None
    default_source_name: str | None


def facts_from_server_info(info: ServerInfo, socket_path: str) -> AudioFacts:
    return AudioFacts(
        available=True,
        socket_path=socket_path,
        server=server_kind(info.server_name or ""),
        server_name=info.server_name or None,
        server_version=info.server_version or None,
        default_sink=info.default_sink_name or None,
        default_source=info.default_source_name or None,
    )


class _RefusedError(Exception):
    """Internal: the server failed the connection before the deadline (not a timeout)."""


def _server_info(path: str, connect_timeout: float) -> ServerInfo:
    import pulsectl

    class Pulse(pulsectl.Pulse):  # type: ignore[misc]
        # pulsectl 24.12's connect(timeout=) keeps polling until the deadline even after the
        # context is READY (its poll loop only stops on FAILED): stop it as soon as it is settled.
        def _pulse_state_cb(self, ctx: object, userdata: object) -> None:
            super()._pulse_state_cb(ctx, userdata)
            if self.connected is not None:
                self._loop_stop = True

    pulse = Pulse("sandbox-probe", server=f"unix:{path}", connect=False)
    try:
        started = time.monotonic()
        try:
            pulse.connect(autospawn=False, timeout=connect_timeout)
        except pulsectl.PulseError as exc:
            # pulsectl words every failure under a timeout as "Timed-out": tell them apart by time
            if time.monotonic() - started < connect_timeout * 0.9:
                raise _RefusedError(str(exc)) from exc
            raise TimeoutError(str(exc)) from exc
        info: ServerInfo = pulse.server_info()
        return info
    finally:
        pulse.close()


def probe(env: Mapping[str, str], timeout: float) -> AudioFacts:
    """Facts about the user's audio server; returns within `timeout` even if the server hangs."""
    deadline = Deadline(timeout)
    where = resolve_socket(env, os.path.exists)
    if isinstance(where, Missing):
        return AudioFacts(False, where.reason)
    problem = check_unix(where.path, deadline)
    if problem is not None:
        return AudioFacts(False, problem.reason, socket_path=where.path)
    # pulsectl bounds connect() but not server_info(); the worker thread bounds both, and
    # connect gets a little less so that its own clean timeout wins the race.
    budget = deadline.left()
    try:
        info = run_bounded(lambda: _server_info(where.path, budget * 0.9), budget)
    except TimeoutError:
        return AudioFacts(
            False, f"no answer from {where.path} within {timeout:g} s", socket_path=where.path
        )
    except _RefusedError:
        return AudioFacts(
            False,
            f"{where.path} refused the client (not an audio server, or authentication failed)",
            socket_path=where.path,
        )
    except Exception as exc:  # pulsectl and ctypes (no libpulse) errors; the text says enough
        return AudioFacts(False, f"pulsectl failed: {exc}", socket_path=where.path)
    return facts_from_server_info(info, where.path)
