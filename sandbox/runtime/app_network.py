"""One app's own engine network: made by its first instance, removed by its last; never prints.

`network = true` gets it; gc removes leftovers; host/netfilter.py fences it where the launcher
may. No policy here.

The app lock orders it as it orders the app cgroup (runtime/app_cgroup.py): a launch creates
the network (idempotent) holding the lock shared until its container runs, so a remover, which
takes the lock exclusively, never deletes it between the create and the start; once a container
runs, the engine lists it on the network and the remover leaves the network alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.engine.adapter import BRIDGE_NAME_OPTION, DockerAdapter, NetworkInfo
from sandbox.errors import LaunchError
from sandbox.host import names, netfilter
from sandbox.policy.facts import HostFacts
from sandbox.policy.plan import LaunchPlan, NetworkMode
from sandbox.runtime.app_lock import app_lock

CREATE_TRIES = 3  # create, and on a name taken meanwhile by a remover's race, look again


@dataclass(frozen=True)
class AppNetwork:
    """The network every networked instance of one app shares (`sandbox-<app-id>`)."""

    adapter: DockerAdapter
    uid: int  # whose app lock guards it
    app_id: str
    fenced: bool  # install the bridge's firewall rules (the probe said the launcher may)

    @property
    def name(self) -> str:
        return names.app_network_name(self.app_id)

    def acquire(self) -> NetworkInfo:
        """The network, created if absent, fenced where it may be; the caller holds the lock
        shared. LaunchError when the engine refuses or the fence cannot be put up."""
        for _ in range(CREATE_TRIES):
            info = self.adapter.inspect_network(self.name)
            if info is None:
                self.adapter.create_network(
                    self.name,
                    labels={names.LABEL_MANAGED: "1", names.LABEL_APP_ID: self.app_id},
                    options={BRIDGE_NAME_OPTION: netfilter.app_bridge_name(self.app_id)},
                )  # None: another launch of the app created it first; inspect it below
                info = self.adapter.inspect_network(self.name)
            if info is not None:
                if self.fenced:
                    netfilter.install(self._bridge(info), _gateway(info))
                return info
        raise LaunchError(f"network {self.name} vanished while it was being created")

    def _bridge(self, info: NetworkInfo) -> str:
        return info.bridge or netfilter.app_bridge_name(self.app_id)

    def remove_if_unused(self, *, wait: bool = True) -> bool:
        """Remove it once no instance uses it; True when it is gone. wait=False (gc): an app
        whose lock is held is left alone (a launch in progress needs its network)."""
        with app_lock(self.uid, self.app_id, wait=wait) as held:
            return held and self.remove_unused_locked()

    def remove_unused_locked(self) -> bool:
        """Remove the network and its fence unless a container uses it; the lock is held."""
        info = self.adapter.inspect_network(self.name)
        if info is None:
            return True
        if info.containers:
            return False
        gone = self.adapter.remove_network(self.name)
        if gone is None:
            return False  # an engine that counts a stopped container as a user
        if self.fenced:
            netfilter.remove(self._bridge(info), _gateway(info))
        return True


def _gateway(info: NetworkInfo) -> str | None:
    return info.gateways[0] if info.gateways else None


def for_plan(
    plan: LaunchPlan, facts: HostFacts, adapter: DockerAdapter, uid: int
) -> AppNetwork | None:
    """The app network a plan's launch needs; None for `network = false`."""
    if plan.hardening.network is not NetworkMode.APP:
        return None
    # Decided again here, not taken from the probe: a probe that timed out must not leave a
    # network unfenced that could be fenced (the review then claimed less than the launch does).
    problem = netfilter.firewall_problem(
        rootless=facts.docker.rootless, local=adapter.url.startswith("unix://")
    )
    return AppNetwork(adapter, uid, plan.labels.app_id, problem is None)


def leftovers(adapter: DockerAdapter, uid: int) -> tuple[AppNetwork, ...]:
    """Every app network this library made on the engine, for gc; their fences go with them
    where this process may remove them."""
    fenced = netfilter.firewall_problem(rootless=False, local=True) is None
    out = []
    for info in adapter.networks_with_label(names.LABEL_MANAGED, "1"):
        app_id = names.app_id_of_network(info.name)
        if app_id is not None and info.labels.get(names.LABEL_APP_ID) == app_id:
            out.append(AppNetwork(adapter, uid, app_id, fenced))
    return tuple(out)
