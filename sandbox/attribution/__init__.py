"""Attribution for system services: app_for_pid via /proc, windows via X-Resource."""

from sandbox.attribution.procfs import (
    AppIdentity,
    AttributionCache,
    Validation,
    app_for_pid,
    parse_cgroup_file,
)
from sandbox.attribution.windows import WindowInfo, windows

__all__ = [
    "AppIdentity",
    "AttributionCache",
    "Validation",
    "WindowInfo",
    "app_for_pid",
    "parse_cgroup_file",
    "windows",
]
