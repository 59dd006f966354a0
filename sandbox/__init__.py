"""sandbox: ship Linux desktop apps as Docker images and run them sandboxed; public API only."""

# The public embedding API (docs/api.md): each name is the one declaration where it is
# defined, resolved lazily so `import sandbox` stays cheap for system services that only
# want app_for_pid.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.attribution.procfs import AppIdentity, app_for_pid
    from sandbox.distribution.resolve import plan
    from sandbox.policy.facts import HostFacts
    from sandbox.policy.plan import LaunchPlan
    from sandbox.probes import probe_host as probe
    from sandbox.runtime.prepare import Prepared, review
    from sandbox.runtime.session import Session, Stdio, launch

__all__ = [
    "AppIdentity",
    "HostFacts",
    "LaunchPlan",
    "Prepared",
    "Session",
    "Stdio",
    "app_for_pid",
    "launch",
    "plan",
    "probe",
    "review",
]

# public name -> (module, name there)
_LAZY = {
    "AppIdentity": ("sandbox.attribution.procfs", "AppIdentity"),
    "app_for_pid": ("sandbox.attribution.procfs", "app_for_pid"),
    "HostFacts": ("sandbox.policy.facts", "HostFacts"),
    "LaunchPlan": ("sandbox.policy.plan", "LaunchPlan"),
    "launch": ("sandbox.runtime.session", "launch"),
    "plan": ("sandbox.distribution.resolve", "plan"),
    "probe": ("sandbox.probes", "probe_host"),
    "Prepared": ("sandbox.runtime.prepare", "Prepared"),
    "review": ("sandbox.runtime.prepare", "review"),
    "Session": ("sandbox.runtime.session", "Session"),
    "Stdio": ("sandbox.runtime.session", "Stdio"),
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(where[0]), where[1])
