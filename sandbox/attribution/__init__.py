"""Attribution: which app a host process belongs to, for system services; reads /proc only."""

from sandbox.attribution.procfs import (
    AppIdentity,
    AttributionCache,
    Validation,
    app_for_pid,
    parse_cgroup_file,
)

__all__ = ["AppIdentity", "AttributionCache", "Validation", "app_for_pid", "parse_cgroup_file"]
