"""Which provider serves (and, for gc, cleans up after) which request; no I/O of its own."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path

from sandbox.policy.plan import (
    GrantState,
    HotplugRequest,
    LaunchPlan,
    PulseProxyRequest,
    StorageRequest,
    WaylandSocketRequest,
    X11CookieRequest,
)
from sandbox.policy.vocabulary import Capability, Permission
from sandbox.providers.grant import Provider

# The PulseAudio proxy provider is written separately. The hook: a module
# `sandbox.providers.pulse.provider` with a class `PulseProvider(request: PulseProxyRequest)`
# that satisfies the Provider protocol. Until it exists, audio is reported unavailable; the
# host's server socket is never mounted raw (that would let the app record and snoop).
PULSE_PROVIDER_MODULE = "sandbox.providers.pulse.provider"
PULSE_PROVIDER_CLASS = "PulseProvider"
PULSE_MISSING = "the audio proxy is not available in this version of sandbox"


def _pulse_factory() -> Callable[[PulseProxyRequest], Provider] | None:
    try:
        module = importlib.import_module(PULSE_PROVIDER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == PULSE_PROVIDER_MODULE:
            return None
        raise
    factory: Callable[[PulseProxyRequest], Provider] | None = getattr(
        module, PULSE_PROVIDER_CLASS, None
    )
    return factory


def _mark_unavailable(plan: LaunchPlan, request: PulseProxyRequest, reason: str) -> LaunchPlan:
    perms: set[Permission] = {Capability.AUDIO_PLAYBACK, Capability.AUDIO_RECORD}
    statuses = tuple(
        dataclasses.replace(s, state=GrantState.UNAVAILABLE, detail=reason)
        if s.permission in perms and s.state is GrantState.GRANTED
        else s
        for s in plan.statuses
    )
    requests = tuple(r for r in plan.requests if r != request)
    return dataclasses.replace(plan, statuses=statuses, requests=requests)


def providers_for(plan: LaunchPlan) -> tuple[LaunchPlan, tuple[Provider, ...]]:
    """The providers for the plan's requests, in setup order, and the plan as it will really run.

    A request nobody can serve yet is dropped and its permission reported UNAVAILABLE, so the
    review the user consents to says what the app will actually get.
    """
    providers: list[Provider] = []
    for request in plan.requests:
        match request:
            case StorageRequest():
                from sandbox.providers.storage import StorageProvider

                providers.append(StorageProvider(request))
            case X11CookieRequest():
                # Imported here: python-xlib costs import time that apps without X11 should
                # not pay.
                from sandbox.providers.x11 import X11Provider

                providers.append(X11Provider(request))
            case WaylandSocketRequest():
                from sandbox.providers.wayland import WaylandProvider

                providers.append(WaylandProvider(request))
            case PulseProxyRequest():
                factory = _pulse_factory()
                if factory is None:
                    plan = _mark_unavailable(plan, request, PULSE_MISSING)
                else:
                    providers.append(factory(request))
            case HotplugRequest():
                from sandbox.providers.devices import HotplugProvider

                # The nodes present at launch are already in plan.devices (the engine makes
                # them); the provider tracks them so their unplug takes them away too.
                present = tuple(d for d in plan.devices if d.capability == request.capability)
                providers.append(HotplugProvider(request, present=present))
            case _:
                pass  # NvidiaRequest is compiled straight into the spec
    return plan, tuple(providers)


def collect_instance(instance_dir: Path, xauthority: Path | None) -> None:
    """gc of the display providers' leftovers in one dead instance's dir (revokes X11 cookies)."""
    from sandbox.providers import wayland, x11

    x11.collect(instance_dir, xauthority)
    wayland.collect(instance_dir)
