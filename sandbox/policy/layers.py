"""Policy layers (defaults < manifest < site < user) and their merge; pure (files: layer_files)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sandbox.errors import PolicyError
from sandbox.policy.manifest import AppInfo, Manifest, StorageSpec
from sandbox.policy.plan import Limits
from sandbox.policy.vocabulary import (
    AudioMode,
    Capability,
    DisplayRequest,
    Permission,
    Risk,
    Storage,
    permission_sort_key,
)

_Num = TypeVar("_Num", int, float, Risk)

# A fallback capability is used only where the one it stands in for is not granted or not
# available on the host (flatpak's fallback-x11). One pair today; a table so the rule is data.
FALLBACK_FOR: Mapping[Capability, Capability] = {
    Capability.DISPLAY_X11: Capability.DISPLAY_WAYLAND,
}

# What granting a key also gives. The packaged catalog's `implies` says the same (a test checks);
# merge() prefers the catalog it is given and falls back to this table.
IMPLIES: Mapping[Permission, tuple[Capability, ...]] = {
    Capability.DISPLAY_X11_TRUSTED: (Capability.DISPLAY_X11,),
    Capability.AUDIO_RECORD: (Capability.AUDIO_PLAYBACK,),
}


class CapabilityInfo(Protocol):
    """What the layers and the engine read of one catalog entry."""

    @property
    def title(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def risk(self) -> Risk: ...

    @property
    def implies(self) -> tuple[Capability, ...]: ...


class CatalogLike(Protocol):
    def get(self, permission: Permission) -> CapabilityInfo: ...


# --- what an app asks for -----------------------------------------------------------------------


@dataclass(frozen=True)
class PermissionSet:
    """Requested permissions; `fallbacks` are conditional ones (keys of FALLBACK_FOR)."""

    permissions: frozenset[Permission] = frozenset()
    fallbacks: frozenset[Capability] = frozenset()

    def __post_init__(self) -> None:
        for cap in self.fallbacks:
            if cap not in FALLBACK_FOR:
                raise PolicyError(f"{cap}: is not a capability that can be a fallback")

    def all(self) -> frozenset[Permission]:
        return self.permissions | self.fallbacks

    def union(self, other: PermissionSet) -> PermissionSet:
        permissions = self.permissions | other.permissions
        # an unconditional request beats a conditional one for the same capability
        return PermissionSet(permissions, (self.fallbacks | other.fallbacks) - permissions)


def requested(manifest: Manifest) -> PermissionSet:
    """What the manifest asks for; `wayland-or-x11` stays conditional, not two grants."""
    caps = manifest.capabilities
    permissions: set[Permission] = set()
    fallbacks: set[Capability] = set()
    match caps.display:
        case DisplayRequest.WAYLAND:
            permissions.add(Capability.DISPLAY_WAYLAND)
        case DisplayRequest.X11:
            permissions.add(Capability.DISPLAY_X11)
        case DisplayRequest.X11_TRUSTED:
            permissions.add(Capability.DISPLAY_X11_TRUSTED)
        case DisplayRequest.WAYLAND_OR_X11:
            permissions.add(Capability.DISPLAY_WAYLAND)
            fallbacks.add(Capability.DISPLAY_X11)
        case None:
            pass
    if AudioMode.PLAYBACK in caps.audio:
        permissions.add(Capability.AUDIO_PLAYBACK)
    if AudioMode.RECORD in caps.audio:
        permissions.add(Capability.AUDIO_RECORD)
    for flag, cap in (
        (caps.gpu, Capability.GPU),
        (caps.webcam, Capability.WEBCAM),
        (caps.gamepad, Capability.GAMEPAD),
        (caps.network, Capability.NETWORK),
    ):
        if flag:
            permissions.add(cap)
    permissions.update(Storage(spec.name) for spec in caps.storage)
    return PermissionSet(frozenset(permissions), frozenset(fallbacks))


def implied(p: Permission, catalog: CatalogLike | None) -> frozenset[Permission]:
    """Everything granting `p` also gives, transitively, without `p` itself."""
    seen: set[Permission] = set()
    todo: list[Permission] = [p]
    while todo:
        current = todo.pop()
        direct = catalog.get(current).implies if catalog else IMPLIES.get(current, ())
        for q in direct:
            if q not in seen and q != p:
                seen.add(q)
                todo.append(q)
    return frozenset(seen)


def adds_permissions(
    old: Manifest | PermissionSet, new: Manifest | PermissionSet
) -> tuple[Permission, ...]:
    """What `new` asks for that `old` did not: a non-empty result means asking consent again.

    A conditional X11 becoming unconditional counts (it now replaces Wayland); untrusted to
    trusted X11 counts; a storage whose in-container path changes does not (same host dir).
    """
    old_set = requested(old) if isinstance(old, Manifest) else old
    new_set = requested(new) if isinstance(new, Manifest) else new
    covered: set[Permission] = set(old_set.permissions)
    for p in old_set.permissions:
        covered |= implied(p, None)
    covered_conditionally = covered | old_set.fallbacks
    added = [p for p in new_set.permissions if p not in covered]
    added += [p for p in new_set.fallbacks if p not in covered_conditionally]
    return tuple(sorted(set(added), key=permission_sort_key))


# --- built-in defaults --------------------------------------------------------------------------


@dataclass(frozen=True)
class Defaults:
    """The lowest layer: nothing granted, the built-in limits."""

    permissions: PermissionSet = field(default_factory=PermissionSet)
    limits: Limits = field(default_factory=Limits)


BUILTIN_DEFAULTS = Defaults()


# --- site policy (admin) ------------------------------------------------------------------------


@dataclass(frozen=True)
class SitePolicy:
    """What the administrator allows: denials for all apps or one app, risk and limit caps."""

    deny: frozenset[Permission] = frozenset()
    deny_for_app: Mapping[str, frozenset[Permission]] = field(default_factory=dict)
    max_risk: Risk | None = None  # deny every capability riskier than this
    max_memory_bytes: int | None = None
    max_cpus: float | None = None
    max_pids: int | None = None
    sources: tuple[str, ...] = ()  # the files it came from, for messages
    require_signature: bool = False  # refuse to install or update from unsigned bundles

    def __hash__(self) -> int:
        return hash((self.deny, tuple(sorted(self.deny_for_app)), self.max_risk, self.sources))

    def denied_for(self, app_id: str) -> frozenset[Permission]:
        return self.deny | self.deny_for_app.get(app_id, frozenset())

    def combine(self, other: SitePolicy) -> SitePolicy:
        """Two site files together: the stricter of each setting."""
        per_app = {k: set(v) for k, v in self.deny_for_app.items()}
        for app_id, denied in other.deny_for_app.items():
            per_app.setdefault(app_id, set()).update(denied)
        return SitePolicy(
            deny=self.deny | other.deny,
            deny_for_app={k: frozenset(v) for k, v in per_app.items()},
            max_risk=_min_opt(self.max_risk, other.max_risk),
            max_memory_bytes=_min_opt(self.max_memory_bytes, other.max_memory_bytes),
            max_cpus=_min_opt(self.max_cpus, other.max_cpus),
            max_pids=_min_opt(self.max_pids, other.max_pids),
            sources=self.sources + other.sources,
            require_signature=self.require_signature or other.require_signature,
        )


def _min_opt(a: _Num | None, b: _Num | None) -> _Num | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# --- user overrides -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserOverride:
    """The user's decisions for one app: revoke anything; grant beyond the manifest explicitly."""

    app_id: str
    grant: frozenset[Permission] = frozenset()
    revoke: frozenset[Permission] = frozenset()

    def __post_init__(self) -> None:
        both = self.grant & self.revoke
        if both:
            names = ", ".join(sorted(str(p) for p in both))
            raise PolicyError(f"override for {self.app_id}: both granted and revoked: {names}")

    def with_grant(self, permission: Permission) -> UserOverride:
        return UserOverride(self.app_id, self.grant | {permission}, self.revoke - {permission})

    def with_revoke(self, permission: Permission) -> UserOverride:
        return UserOverride(self.app_id, self.grant - {permission}, self.revoke | {permission})

    def with_reset(self, permission: Permission | None = None) -> UserOverride:
        """Forget the user's decision on `permission` (on everything when None)."""
        if permission is None:
            return UserOverride(self.app_id)
        return UserOverride(self.app_id, self.grant - {permission}, self.revoke - {permission})

    @property
    def is_empty(self) -> bool:
        return not self.grant and not self.revoke


# --- merge --------------------------------------------------------------------------------------


class Decision(enum.StrEnum):
    GRANTED = "granted"
    DENIED_BY_SITE = "denied-by-site"
    REVOKED_BY_USER = "revoked-by-user"
    NOT_REQUESTED = "not-requested"


@dataclass(frozen=True)
class PolicyEntry:
    permission: Permission
    decision: Decision
    conditional: bool = False  # a fallback, used only where its preferred capability is not
    user_granted: bool = False  # granted by explicit user consent beyond the manifest
    implied_by: Permission | None = None  # not asked for; comes with this granted one


@dataclass(frozen=True)
class EffectivePolicy:
    """All layers merged for one app; host conditions are still to be evaluated by the engine."""

    app: AppInfo
    entries: tuple[PolicyEntry, ...]  # every fixed capability, plus every storage in play
    storage: tuple[StorageSpec, ...]  # the manifest's storage paths
    limits: Limits

    def entry(self, permission: Permission) -> PolicyEntry | None:
        for e in self.entries:
            if e.permission == permission:
                return e
        return None

    def decision(self, permission: Permission) -> Decision:
        e = self.entry(permission)
        return Decision.NOT_REQUESTED if e is None else e.decision

    def granted(self) -> frozenset[Permission]:
        return frozenset(e.permission for e in self.entries if e.decision is Decision.GRANTED)


@dataclass(frozen=True)
class _Layers:
    """The merge's inputs as sets: what is asked for, granted and revoked by the user, denied."""

    asked: PermissionSet
    grant: frozenset[Permission]
    revoke: frozenset[Permission]
    denied: frozenset[Permission]
    max_risk: Risk | None
    catalog: CatalogLike | None

    def universe(self) -> set[Permission]:
        return set(Capability) | self.asked.all() | self.grant | self.revoke

    def _site_denies(self, p: Permission) -> bool:
        return p in self.denied or (
            self.max_risk is not None
            and self.catalog is not None
            and self.catalog.get(p).risk > self.max_risk
        )

    def _blocked(self, p: Permission, direct: Callable[[Permission], bool]) -> bool:
        return direct(p) or any(direct(q) for q in implied(p, self.catalog))

    def decide(self, p: Permission) -> Decision:
        if p not in self.asked.all() and p not in self.grant:
            return Decision.NOT_REQUESTED
        if self._blocked(p, self._site_denies):
            return Decision.DENIED_BY_SITE
        if self._blocked(p, self.revoke.__contains__):
            return Decision.REVOKED_BY_USER
        return Decision.GRANTED

    def entry(
        self, p: Permission, decision: Decision, implied_by: Mapping[Permission, Permission]
    ) -> PolicyEntry:
        return PolicyEntry(
            p,
            decision,
            # an explicit user grant, or a bigger grant implying it, makes a fallback definite
            conditional=p in self.asked.fallbacks and p not in self.grant and p not in implied_by,
            user_granted=p in self.grant and p not in self.asked.all(),
            implied_by=implied_by.get(p),
        )


def _check_layers(
    manifest: Manifest, site: SitePolicy, user: UserOverride | None, catalog: CatalogLike | None
) -> None:
    app_id = manifest.app.id
    if user is not None and user.app_id != app_id:
        raise PolicyError(f"override is for {user.app_id}, not for {app_id}")
    if site.max_risk is not None and catalog is None:
        raise PolicyError(
            f"site policy {', '.join(site.sources) or '(built in)'}: max-risk needs the "
            "capability catalog"
        )


def _grant_implied(
    decisions: dict[Permission, Decision], ordered: list[Permission], catalog: CatalogLike | None
) -> dict[Permission, Permission]:
    """Grant what the granted ones imply; returns which grant brought each one in."""
    implied_by: dict[Permission, Permission] = {}
    for p in ordered:
        if decisions[p] is not Decision.GRANTED:
            continue
        for q in sorted(implied(p, catalog), key=permission_sort_key):
            # a grantable p implies only grantable q (_Layers.decide), so this never revives
            # a denied or revoked q
            if decisions.get(q) is Decision.NOT_REQUESTED:
                decisions[q] = Decision.GRANTED
                implied_by.setdefault(q, p)
    return implied_by


def merge(
    defaults: Defaults,
    manifest: Manifest,
    site: SitePolicy,
    user: UserOverride | None,
    *,
    catalog: CatalogLike | None = None,
) -> EffectivePolicy:
    """defaults < manifest < site < user; a site denial beats any user grant.

    Implications (x11-trusted gives x11, record gives playback) come from `catalog`, else from
    IMPLIES. A denial or revocation of `q` also takes away every `p` that implies `q`, so a
    denied or revoked capability never comes back through a bigger one. The site's `max_risk`
    needs `catalog`; without one it fails closed with PolicyError rather than being ignored.
    """
    _check_layers(manifest, site, user, catalog)
    layers = _Layers(
        asked=defaults.permissions.union(requested(manifest)),
        grant=user.grant if user else frozenset(),
        revoke=user.revoke if user else frozenset(),
        denied=site.denied_for(manifest.app.id),
        max_risk=site.max_risk,
        catalog=catalog,
    )
    universe = layers.universe()
    decisions = {p: layers.decide(p) for p in universe}
    ordered = sorted(universe, key=permission_sort_key)
    implied_by = _grant_implied(decisions, ordered, catalog)
    return EffectivePolicy(
        app=manifest.app,
        entries=tuple(layers.entry(p, decisions[p], implied_by) for p in ordered),
        storage=manifest.capabilities.storage,
        limits=_limits(defaults.limits, manifest, site),
    )


def _limits(defaults: Limits, manifest: Manifest, site: SitePolicy) -> Limits:
    asked = manifest.limits
    memory = asked.memory_bytes if asked.memory_bytes is not None else defaults.memory_bytes
    cpus = asked.cpus if asked.cpus is not None else defaults.cpus
    pids = asked.pids if asked.pids is not None else defaults.pids
    # the site's maxima clip both the app's request and the built-in default
    return Limits(
        memory_bytes=min(memory, site.max_memory_bytes or memory),
        cpus=min(cpus, site.max_cpus or cpus),
        pids=min(pids, site.max_pids or pids),
    )
