"""sandbox: ship Linux desktop apps as Docker images and run them sandboxed; public API only."""

# The public embedding API (docs/api.md). Names resolve lazily so `import sandbox` stays cheap
# for system services that only want app_for_pid.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.attribution.procfs import AppIdentity, app_for_pid
    from sandbox.policy.facts import HostFacts
    from sandbox.policy.plan import LaunchPlan
    from sandbox.runtime.api import launch, plan, probe
    from sandbox.runtime.session import Prepared, Session, Stdio

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
]

_LAZY = {
    "AppIdentity": "sandbox.attribution.procfs",
    "app_for_pid": "sandbox.attribution.procfs",
    "HostFacts": "sandbox.policy.facts",
    "LaunchPlan": "sandbox.policy.plan",
    "launch": "sandbox.runtime.api",
    "plan": "sandbox.runtime.api",
    "probe": "sandbox.runtime.api",
    "Prepared": "sandbox.runtime.session",
    "Session": "sandbox.runtime.session",
    "Stdio": "sandbox.runtime.session",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
