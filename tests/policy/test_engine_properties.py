"""Hypothesis: over generated manifests, site policies, overrides and hosts, the guarantees hold.

The oracles here are written independently of the code they check: the allowed device nodes
come from the facts, the mount never-list is restated from docs/policy.md, limits from the caps.
"""

from __future__ import annotations

import dataclasses
import functools
import posixpath

import pytest
from engine_support import (
    APP_ID,
    bare_host,
    catalog,
    desktop,
    make_plan,
    manifest,
    nvidia_host,
    x11_host,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import LaunchError
from sandbox.policy import engine
from sandbox.policy.facts import HostFacts
from sandbox.policy.layers import (
    BUILTIN_DEFAULTS,
    Decision,
    EffectivePolicy,
    SitePolicy,
    UserOverride,
    merge,
)
from sandbox.policy.manifest import MAX_MEMORY, MIN_MEMORY, Manifest
from sandbox.policy.manifest import Limits as AskedLimits
from sandbox.policy.plan import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY_BYTES,
    DEFAULT_PIDS,
    GrantState,
    LaunchPlan,
    Limits,
    Mount,
    MountKind,
    NamespaceMode,
    NetworkMode,
    baseline_hardening,
)
from sandbox.policy.vocabulary import (
    AudioMode,
    Capability,
    DisplayRequest,
    Permission,
    Risk,
    Storage,
)
from sandbox.providers.grant import Grant
from sandbox.runtime.compile import LaunchTarget, compile

STORAGE_NAMES = ["saves", "cache", "logs"]
PERMISSIONS: list[Permission] = [*Capability, *(Storage(n) for n in STORAGE_NAMES)]

segments = st.lists(st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True), max_size=3)
storage_paths = st.builds(
    lambda root, segs: "/".join([root, *segs]),
    st.sampled_from(["/home/app", "/opt/game", "/srv", "/data", "/var/games"]),
    segments,
)
asked_limits = st.builds(
    AskedLimits,
    memory_bytes=st.none() | st.integers(MIN_MEMORY, 64 * 1024**3),
    cpus=st.none() | st.floats(0.01, 64.0),
    pids=st.none() | st.integers(8, 100_000),
)
manifests = st.builds(
    lambda m, limits: dataclasses.replace(m, limits=limits),
    st.builds(
        manifest,
        st.none() | st.sampled_from(DisplayRequest),
        st.lists(st.sampled_from(AudioMode), unique=True).map(tuple),
        gpu=st.booleans(),
        webcam=st.booleans(),
        gamepad=st.booleans(),
        network=st.booleans(),
        # the name ends the path, so two storages never share a target
        storage=st.lists(
            st.tuples(st.sampled_from(STORAGE_NAMES), storage_paths), unique_by=lambda t: t[0]
        ).map(lambda pairs: tuple((n, f"{path}/{n}") for n, path in pairs)),
    ),
    asked_limits,
)
perm_sets = st.frozensets(st.sampled_from(PERMISSIONS))
sites = st.builds(
    SitePolicy,
    deny=perm_sets,
    deny_for_app=st.dictionaries(st.sampled_from([APP_ID, "org.other.App"]), perm_sets),
    max_risk=st.none() | st.sampled_from(Risk),
    max_memory_bytes=st.none() | st.integers(MIN_MEMORY, MAX_MEMORY),
    max_cpus=st.none() | st.floats(0.01, 64.0),
    max_pids=st.none() | st.integers(8, 100_000),
)
overrides = (
    st.tuples(perm_sets, perm_sets).map(lambda gr: UserOverride(APP_ID, gr[0] - gr[1], gr[1]))
    | st.none()
)
homes = st.none() | st.sampled_from(["/home/user", "/root", "/var/lib/user", "/srv/home/u"])
hosts = st.builds(
    lambda facts, home: dataclasses.replace(facts, user=dataclasses.replace(facts.user, home=home)),
    st.sampled_from(
        [
            bare_host(),
            x11_host(),
            x11_host(security=False),
            desktop(),
            nvidia_host(runtime=True),
            nvidia_host(runtime=False),
        ]
    ),
    homes,
)

# --- the mount never-list of docs/policy.md, restated as an oracle ------------------------------

RUNTIME_DIR = "/run/user/1000"
ENGINE_PATHS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman",
    "/var/run/podman",
    "/run/containerd",
    "/var/run/containerd",
    f"{RUNTIME_DIR}/podman",
    f"{RUNTIME_DIR}/docker.sock",
)
PROTECTED: tuple[str, ...] = ("/", "/home", "/root", "/proc", "/sys", "/dev", "/etc", "/usr")
PROTECTED += ("/var/lib/docker", "/var/lib/containers")
NO_SOURCE_BELOW = ("/proc", "/sys", "/dev", "/var/lib/docker", "/var/lib/containers")


def _at_or_below(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _never_list_broken(m: Mount, home: str | None, writable_roots: tuple[str, ...]) -> str | None:
    if not m.target.startswith("/") or m.target == "/":
        return "target"
    if any(_at_or_below(m.target, r) for r in ("/proc", "/sys")):
        return "target under /proc or /sys"
    if m.kind is not MountKind.BIND:
        return None
    src = m.source or ""
    if not src.startswith("/") or posixpath.normpath(src) != src:
        return "source not normalized"
    if any(_at_or_below(p, src) for p in (*PROTECTED, *((home,) if home else ()))):
        return "source is or holds a protected dir"
    if any(_at_or_below(src, r) for r in NO_SOURCE_BELOW):
        return "source under a kernel or device tree"
    if any(_at_or_below(src, e) or _at_or_below(e, src) for e in ENGINE_PATHS):
        return "source is, holds or lies in an engine socket path"
    if "docker.sock" in src.split("/") or "podman.sock" in src.split("/"):
        return "an engine socket by name"
    if not m.read_only and not any(_at_or_below(src, r) for r in writable_roots):
        return "writable outside the app's own dirs"
    return None


def _allowed_nodes(facts: HostFacts) -> dict[Capability, set[tuple[str, int, int]]]:
    """Every node a granted capability may bring, read straight off the facts."""
    d = facts.devices
    gpu = {(g.node, g.major, g.minor) for g in d.gpus}
    gpu |= {(n.node, n.major, n.minor) for n in d.nvidia.nodes}
    cams = {(c.node, c.major, c.minor) for c in d.webcams}
    cams |= {(c.media.node, c.media.major, c.media.minor) for c in d.webcams if c.media}
    pads = {(g.node, g.major, g.minor) for g in d.gamepads}
    pads |= {(j.node, j.major, j.minor) for g in d.gamepads for j in g.js}
    return {Capability.GPU: gpu, Capability.WEBCAM: cams, Capability.GAMEPAD: pads}


def _run(m: Manifest, site: SitePolicy, user: UserOverride | None, facts: HostFacts):  # type: ignore[no-untyped-def]
    cat = catalog()
    policy = merge(BUILTIN_DEFAULTS, m, site, user, catalog=cat)
    return policy, engine.plan(policy, facts, catalog=cat)


def _check_hardening(plan: LaunchPlan, facts: HostFacts) -> None:
    h = plan.hardening
    granted = plan.granted()
    # the baseline is in every plan; only `network` varies, and only with the capability
    assert dataclasses.replace(h, network=NetworkMode.NONE) == baseline_hardening(h.user)
    assert h.network in (NetworkMode.NONE, NetworkMode.APP)
    assert (h.network is NetworkMode.APP) == (Capability.NETWORK in granted)

    # the never-list
    assert not h.privileged and h.cap_add == () and h.cap_drop == ("ALL",)
    assert NamespaceMode.HOST not in (h.ipc, h.pid, h.uts)
    for mount in plan.mounts + h.tmpfs:
        assert mount.kind is not MountKind.BIND or mount.source not in (
            "/",
            "/home",
            "/var/run/docker.sock",
        )
        assert _never_list_broken(mount, facts.user.home, ()) is None, mount
    allowed = _allowed_nodes(facts)
    for dev in plan.devices:
        assert dev.capability in granted
        assert (dev.path, dev.major, dev.minor) in allowed[dev.capability]
        assert "m" not in dev.permissions


def _check_limits(plan: LaunchPlan, m: Manifest, site: SitePolicy) -> None:
    # limits are always there, positive, and never past a site cap
    lim = plan.limits
    assert isinstance(lim, Limits)
    assert lim.memory_bytes > 0 and lim.cpus > 0 and lim.pids > 0
    for value, cap, asked, default in (
        (lim.memory_bytes, site.max_memory_bytes, m.limits.memory_bytes, DEFAULT_MEMORY_BYTES),
        (lim.cpus, site.max_cpus, m.limits.cpus, DEFAULT_CPUS),
        (lim.pids, site.max_pids, m.limits.pids, DEFAULT_PIDS),
    ):
        if cap is not None:
            assert value <= cap
        wanted = default if asked is None else asked
        assert value == (wanted if cap is None else min(wanted, cap))


def _check_denials(plan: LaunchPlan, site: SitePolicy, user: UserOverride | None) -> None:
    # denied or revoked never comes back
    granted = plan.granted()
    site_denied = site.denied_for(APP_ID)
    for p in PERMISSIONS:
        status = plan.status(p)
        if p in site_denied:
            assert p not in granted
            if status is not None:
                assert status.state in (GrantState.DENIED_BY_SITE, GrantState.NOT_REQUESTED)
        if user is not None and p in user.revoke:
            assert p not in granted
            if status is not None:
                assert status.state is not GrantState.GRANTED


def _check_statuses(policy: EffectivePolicy, plan: LaunchPlan) -> None:
    # unavailable grants stay listed
    for entry in policy.entries:
        status = plan.status(entry.permission)
        assert status is not None, entry.permission
        if entry.decision is Decision.GRANTED:
            assert status.state in (
                GrantState.GRANTED,
                GrantState.UNAVAILABLE,
                GrantState.FALLBACK_UNUSED,
            )
        else:
            assert status.state.value == entry.decision.value


def _check_requests(plan: LaunchPlan) -> None:
    # a trusted X cookie only with display.x11-trusted granted
    granted = plan.granted()
    for r in plan.requests:
        if getattr(r, "trusted", False):
            assert Capability.DISPLAY_X11_TRUSTED in granted
        if getattr(r, "record", False):
            assert Capability.AUDIO_RECORD in granted


@settings(max_examples=300, deadline=None)
@given(manifests, sites, overrides, hosts)
def test_guarantees(
    m: Manifest, site: SitePolicy, user: UserOverride | None, facts: HostFacts
) -> None:
    policy, plan = _run(m, site, user, facts)
    _check_hardening(plan, facts)
    _check_limits(plan, m, site)
    _check_denials(plan, site, user)
    _check_statuses(policy, plan)
    _check_requests(plan)


@settings(max_examples=100, deadline=None)
@given(manifests, sites, overrides, hosts)
def test_plan_is_deterministic(
    m: Manifest, site: SitePolicy, user: UserOverride | None, facts: HostFacts
) -> None:
    assert _run(m, site, user, facts) == _run(m, site, user, facts)


# --- compile(): whatever the providers hand in, what reaches the spec keeps the never-list -------

HOME = "/home/user"
STORAGE = f"{HOME}/.local/share/sandbox/apps/{APP_ID}"
INSTANCE = f"{RUNTIME_DIR}/sandbox/instances/i1"
TARGET = LaunchTarget(
    image="game:1",
    launcher="1:1",
    instance_dir=INSTANCE,
    home=HOME,
    runtime_dir=RUNTIME_DIR,
    storage_dir=STORAGE,
)
# Interesting places: forbidden ones, their parents and children, and what providers really use.
SOURCE_BASES = [
    *PROTECTED,
    *ENGINE_PATHS,
    HOME,
    RUNTIME_DIR,
    "/var",
    "/var/lib",
    "/run",
    "/var/run",
    "/tmp/.X11-unix/X0",
    "/usr/share/fonts",
    "/srv/games",
    STORAGE,
    INSTANCE,
    f"{RUNTIME_DIR}/wayland-grants",
]


@functools.cache
def _bare_plan() -> LaunchPlan:
    return make_plan(manifest(), bare_host())


sources = st.builds(
    lambda base, segs: posixpath.join(base, *segs) if segs else base,
    st.sampled_from(SOURCE_BASES),
    st.lists(st.sampled_from(["a", "saves", "docker.sock", "podman", "pulse", ".."]), max_size=2),
)
targets = st.builds(
    lambda base, seg: f"{base}/{seg}",
    st.sampled_from(["/mnt", "/home/app", "/proc", "/sys", "/run/user/1000", "/opt"]),
    st.from_regex(r"[a-z]{1,6}", fullmatch=True),
)
bind_mounts = st.builds(
    lambda src, tgt, ro: Mount(tgt, MountKind.BIND, src, read_only=ro),
    sources,
    targets,
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(bind_mounts, max_size=4, unique_by=lambda m: m.target))
def test_compile_lets_no_forbidden_grant_through(mounts: list[Mount]) -> None:
    plan = _bare_plan()
    broken = [m for m in mounts if _never_list_broken(m, HOME, (STORAGE, INSTANCE)) is not None]
    try:
        spec = compile(plan, Grant(mounts=tuple(mounts)), TARGET)
    except LaunchError as exc:
        # refused: then it was for a mount the oracle also rejects, and the message names it
        assert broken, f"refused a clean grant: {exc}"
        assert any(m.target in str(exc) for m in broken), str(exc)
        return
    assert not broken, f"compile() let through {broken}"
    for m in spec.mounts:
        assert _never_list_broken(m, HOME, (STORAGE, INSTANCE)) is None


@pytest.mark.parametrize("base", [b for b in SOURCE_BASES if b in PROTECTED or b in ENGINE_PATHS])
def test_compile_refuses_each_forbidden_base(base: str) -> None:
    with pytest.raises(LaunchError, match="/mnt/x"):
        compile(
            _bare_plan(),
            Grant(mounts=(Mount("/mnt/x", MountKind.BIND, base),)),
            TARGET,
        )
