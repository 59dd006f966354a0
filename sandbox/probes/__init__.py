"""Host probes: gather facts into HostFacts, concurrently and time-bounded; they decide nothing."""

from __future__ import annotations

import enum
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


class Resource(enum.StrEnum):
    """The probes by the HostFacts field each fills."""

    DOCKER = "docker"
    X11 = "x11"
    WAYLAND = "wayland"
    AUDIO = "audio"
    DEVICES = "devices"
    CGROUPS = "cgroups"
    USER = "user"


ALWAYS = frozenset({Resource.DOCKER, Resource.CGROUPS, Resource.USER})  # every launch needs them
NOT_REQUESTED = "not requested by this app"


def probe_host(
    env: Mapping[str, str] | None = None,
    timeout: float = PROBE_TIMEOUT_S,
    only: frozenset[Resource] | None = None,
) -> HostFacts:
    """Run the probes concurrently, each bounded by `timeout` seconds.

    With `only`, the other resources (but docker, cgroups and user, which every launch needs)
    are not probed and read as unavailable with the reason "not requested by this app".
    """
    import time

    environ: Mapping[str, str] = dict(os.environ if env is None else env)

    # Each probe module is imported only when its resource is probed: a launch of an app
    # without a display or devices must not pay for importing those probes (~30 ms).
    def docker_probe() -> object:
        from sandbox.probes import docker

        return docker.probe(environ, timeout)

    def x11_probe() -> object:
        from sandbox.probes import x11

        return x11.probe(environ, timeout)

    def wayland_probe() -> object:
        from sandbox.probes import wayland

        return wayland.probe(environ, timeout)

    def pulse_probe() -> object:
        from sandbox.probes import pulse

        return pulse.probe(environ, timeout)

    def devices_probe() -> object:
        from sandbox.probes import devices

        return devices.probe(environ)

    def cgroups_probe() -> object:
        from sandbox.probes import cgroups

        return cgroups.probe(environ)

    def user_probe() -> object:
        from sandbox.probes import user

        return user.probe(environ)

    runs: dict[Resource, tuple[Callable[[], object], type, Callable[[str], object]]] = {
        Resource.DOCKER: (docker_probe, DockerFacts, _off(DockerFacts)),
        Resource.X11: (x11_probe, X11Facts, _off(X11Facts)),
        Resource.WAYLAND: (wayland_probe, WaylandFacts, _off(WaylandFacts)),
        Resource.AUDIO: (pulse_probe, AudioFacts, _off(AudioFacts)),
        Resource.DEVICES: (devices_probe, DeviceFacts, _off(DeviceFacts)),
        Resource.CGROUPS: (cgroups_probe, CgroupFacts, _off(CgroupFacts)),
        Resource.USER: (user_probe, UserFacts, _off(UserFacts)),
    }
    wanted = set(Resource) if only is None else set(only) | ALWAYS
    slots = {r: _Slot(runs[r][0]) for r in Resource if r in wanted}
    for slot in slots.values():
        slot.thread.start()
    deadline = time.monotonic() + timeout
    found: dict[str, object] = {}
    for r in Resource:
        _, kind, fallback = runs[r]
        found[r.value] = (
            _collect(slots[r], kind, fallback, deadline) if r in slots else fallback(NOT_REQUESTED)
        )
    return HostFacts(**found)  # type: ignore[arg-type]


def _off(kind: Callable[[bool, str], T]) -> Callable[[str], T]:
    return lambda reason: kind(False, reason)
