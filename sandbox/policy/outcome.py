"""What one granted permission contributes to a plan on this host; pure data, no I/O, no rules."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.policy.facts import HostFacts
from sandbox.policy.layers import EffectivePolicy, PolicyEntry
from sandbox.policy.plan import (
    DeviceCgroupRule,
    DeviceNode,
    GrantState,
    ResourceRequest,
    SupplementaryGroup,
)
from sandbox.policy.vocabulary import Permission


@dataclass(frozen=True)
class Outcome:
    """One permission's state on this host and the directives it adds when GRANTED."""

    state: GrantState
    detail: str = ""
    devices: tuple[DeviceNode, ...] = ()
    rules: tuple[DeviceCgroupRule, ...] = ()
    groups: tuple[SupplementaryGroup, ...] = ()
    requests: tuple[ResourceRequest, ...] = ()


@dataclass(frozen=True)
class Ask:
    """Everything a per-permission rule may read: the entry, the merged policy, the host."""

    entry: PolicyEntry
    policy: EffectivePolicy
    facts: HostFacts
    granted: frozenset[Permission]  # what the merged policy grants, before host conditions


def unavailable(reason: str) -> Outcome:
    return Outcome(GrantState.UNAVAILABLE, reason)
