"""Attribution API: app_for_pid via /proc, windows via X-Resource; never asks the engine."""

from sandbox.attribution.procfs import (
    AppIdentity,
    AttributionCache,
    Validation,
    app_for_pid,
    parse_cgroup_file,
)
from sandbox.attribution.window_info import WindowInfo


def windows(display: str | None = None) -> tuple[WindowInfo, ...]:
    """The X server's top-level windows with host pid and app; needs a trusted connection."""
    # python-xlib is imported only here: services that call app_for_pid never pay for it.
    from sandbox.attribution.x11_windows import list_windows

    return list_windows(display)


__all__ = [
    "AppIdentity",
    "AttributionCache",
    "Validation",
    "WindowInfo",
    "app_for_pid",
    "parse_cgroup_file",
    "windows",
]
