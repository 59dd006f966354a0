"""Host probes: gather facts into HostFacts, concurrently and time-bounded; they decide nothing."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

from sandbox.policy.facts import (
    AudioFacts,
    CgroupFacts,
    DeviceFacts,
    DockerFacts,
    HostFacts,
    UserFacts,
    WaylandFacts,
    X11Facts,
)

PROBE_TIMEOUT_S = 1.0

T = TypeVar("T")


class _Slot:
    """One probe running in a daemon thread, so a hung server can never hold the process."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # a probe bug is still a fact about the host
            self.error = exc


def _collect(slot: _Slot, kind: type[T], fallback: Callable[[str], T], deadline: float) -> T:
    import time

    slot.thread.join(max(0.0, deadline - time.monotonic()))
    if slot.thread.is_alive():
        return fallback(f"no answer within {PROBE_TIMEOUT_S:g} s")
    if slot.error is not None:
        return fallback(f"probe failed: {type(slot.error).__name__}: {slot.error}")
    assert isinstance(slot.result, kind)
    return slot.result


def probe_host(
    env: Mapping[str, str] | None = None, timeout: float = PROBE_TIMEOUT_S
) -> HostFacts:
    """Run every probe concurrently; each gets at most `timeout` seconds."""
    import time

    from sandbox.probes import cgroups, devices, docker, pulse, user, wayland, x11

    environ: Mapping[str, str] = dict(os.environ if env is None else env)
    slots = {
        "docker": _Slot(lambda: docker.probe(environ, timeout)),
        "x11": _Slot(lambda: x11.probe(environ, timeout)),
        "wayland": _Slot(lambda: wayland.probe(environ, timeout)),
        "audio": _Slot(lambda: pulse.probe(environ, timeout)),
        "devices": _Slot(lambda: devices.probe(environ)),
        "cgroups": _Slot(lambda: cgroups.probe(environ)),
        "user": _Slot(lambda: user.probe(environ)),
    }
    for slot in slots.values():
        slot.thread.start()
    deadline = time.monotonic() + timeout
    return HostFacts(
        docker=_collect(slots["docker"], DockerFacts, lambda r: DockerFacts(False, r), deadline),
        x11=_collect(slots["x11"], X11Facts, lambda r: X11Facts(False, r), deadline),
        wayland=_collect(slots["wayland"], WaylandFacts, lambda r: WaylandFacts(False, r), deadline),
        audio=_collect(slots["audio"], AudioFacts, lambda r: AudioFacts(False, r), deadline),
        devices=_collect(slots["devices"], DeviceFacts, lambda r: DeviceFacts(False, r), deadline),
        cgroups=_collect(slots["cgroups"], CgroupFacts, lambda r: CgroupFacts(False, r), deadline),
        user=_collect(slots["user"], UserFacts, lambda r: UserFacts(False, r), deadline),
    )
