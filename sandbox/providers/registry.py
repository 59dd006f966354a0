"""Which provider serves (and, for gc, cleans up after) which request; no I/O of its own."""

from __future__ import annotations

from pathlib import Path

from sandbox.policy.plan import (
    HotplugRequest,
    LaunchPlan,
    PulseProxyRequest,
    StorageRequest,
    WaylandSocketRequest,
    X11CookieRequest,
)
from sandbox.providers.grant import Provider


def providers_for(plan: LaunchPlan) -> tuple[LaunchPlan, tuple[Provider, ...]]:
    """The providers for the plan's requests, in setup order, and the plan they serve.

    Every request kind has its provider (an NvidiaRequest compiles straight into the spec), so
    the plan comes back as it went in; each provider module is imported only when needed.
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
                from sandbox.providers.pulse.provider import PulseProvider

                providers.append(PulseProvider(request))
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
