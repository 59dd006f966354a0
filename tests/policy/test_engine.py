"""engine.plan(): table-driven over manifest x site x override x host, and the fail-closed gate."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

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

from sandbox.errors import PolicyError
from sandbox.policy import engine, invariants
from sandbox.policy.facts import CgroupDriver, DeviceFacts, HostFacts, UserFacts
from sandbox.policy.layers import BUILTIN_DEFAULTS, SitePolicy, UserOverride, merge
from sandbox.policy.manifest import Manifest
from sandbox.policy.plan import (
    CgroupDriverName,
    DeviceNode,
    GrantState,
    HotplugCgroup,
    HotplugRequest,
    LaunchPlan,
    Mount,
    MountKind,
    NamespaceMode,
    NetworkMode,
    NvidiaMethod,
    NvidiaRequest,
    PulseProxyRequest,
    StorageRequest,
    WaylandSocketRequest,
    X11CookieRequest,
)
from sandbox.policy.vocabulary import (
    AudioMode,
    Capability,
    DisplayRequest,
    Permission,
    Risk,
    Storage,
)

D = DisplayRequest
C = Capability
G = GrantState


@dataclass(frozen=True)
class Case:
    name: str
    manifest: Manifest
    facts: HostFacts
    expect: dict[Permission, GrantState]
    site: SitePolicy | None = None
    user: UserOverride | None = None


CASES = [
    Case(
        "wayland-or-x11 on a Wayland desktop uses Wayland, X11 fallback unused",
        manifest(D.WAYLAND_OR_X11),
        desktop(),
        {C.DISPLAY_WAYLAND: G.GRANTED, C.DISPLAY_X11: G.FALLBACK_UNUSED},
    ),
    Case(
        "wayland-or-x11 on an X11-only host falls back to untrusted X11",
        manifest(D.WAYLAND_OR_X11),
        x11_host(),
        {C.DISPLAY_WAYLAND: G.UNAVAILABLE, C.DISPLAY_X11: G.GRANTED},
    ),
    Case(
        "wayland-or-x11 where the X server lacks SECURITY: unavailable, never trusted",
        manifest(D.WAYLAND_OR_X11),
        x11_host(security=False),
        {
            C.DISPLAY_WAYLAND: G.UNAVAILABLE,
            C.DISPLAY_X11: G.UNAVAILABLE,
            C.DISPLAY_X11_TRUSTED: G.NOT_REQUESTED,
        },
    ),
    Case(
        "user revokes Wayland: the X11 fallback is used even on a Wayland desktop",
        manifest(D.WAYLAND_OR_X11),
        desktop(),
        {C.DISPLAY_WAYLAND: G.REVOKED_BY_USER, C.DISPLAY_X11: G.GRANTED},
        user=UserOverride(APP_ID, revoke=frozenset({C.DISPLAY_WAYLAND})),
    ),
    Case(
        "site denies X11: wayland-or-x11 on an X11-only host has no display",
        manifest(D.WAYLAND_OR_X11),
        x11_host(),
        {C.DISPLAY_WAYLAND: G.UNAVAILABLE, C.DISPLAY_X11: G.DENIED_BY_SITE},
        site=SitePolicy(deny=frozenset({C.DISPLAY_X11})),
    ),
    Case(
        "site denial of X11 also denies trusted X11, which implies it",
        manifest(D.X11_TRUSTED),
        x11_host(),
        {C.DISPLAY_X11_TRUSTED: G.DENIED_BY_SITE},
        site=SitePolicy(deny=frozenset({C.DISPLAY_X11})),
    ),
    Case(
        "trusted X11 granted includes untrusted X11",
        manifest(D.X11_TRUSTED),
        x11_host(security=False),
        {C.DISPLAY_X11_TRUSTED: G.GRANTED, C.DISPLAY_X11: G.GRANTED},
    ),
    Case(
        "no GPU on the host: gpu stays listed as unavailable",
        manifest(gpu=True),
        bare_host(),
        {C.GPU: G.UNAVAILABLE},
    ),
    Case(
        "site max-risk medium denies the webcam and the microphone, keeps playback",
        manifest(audio=(AudioMode.PLAYBACK, AudioMode.RECORD), webcam=True),
        desktop(),
        {C.WEBCAM: G.DENIED_BY_SITE, C.AUDIO_RECORD: G.DENIED_BY_SITE, C.AUDIO_PLAYBACK: G.GRANTED},
        site=SitePolicy(max_risk=Risk.MEDIUM),
    ),
    Case(
        "per-app site denial beats an explicit user grant",
        manifest(),
        desktop(),
        {C.NETWORK: G.DENIED_BY_SITE},
        site=SitePolicy(deny_for_app={APP_ID: frozenset({C.NETWORK})}),
        user=UserOverride(APP_ID, grant=frozenset({C.NETWORK})),
    ),
    Case(
        "a site denial for another app does not apply",
        manifest(network=True),
        desktop(),
        {C.NETWORK: G.GRANTED},
        site=SitePolicy(deny_for_app={"org.other.App": frozenset({C.NETWORK})}),
    ),
    Case(
        "explicit user grant of something not asked for",
        manifest(),
        desktop(),
        {C.GAMEPAD: G.GRANTED, C.WEBCAM: G.NOT_REQUESTED},
        user=UserOverride(APP_ID, grant=frozenset({C.GAMEPAD})),
    ),
    Case(
        "revoking something not asked for changes nothing",
        manifest(),
        desktop(),
        {C.WEBCAM: G.NOT_REQUESTED},
        user=UserOverride(APP_ID, revoke=frozenset({C.WEBCAM})),
    ),
    Case(
        "record only: playback comes with it",
        manifest(audio=(AudioMode.RECORD,)),
        desktop(),
        {C.AUDIO_RECORD: G.GRANTED, C.AUDIO_PLAYBACK: G.GRANTED},
    ),
    Case(
        "user revokes playback: record, which implies it, goes too",
        manifest(audio=(AudioMode.PLAYBACK, AudioMode.RECORD)),
        desktop(),
        {C.AUDIO_RECORD: G.REVOKED_BY_USER, C.AUDIO_PLAYBACK: G.REVOKED_BY_USER},
        user=UserOverride(APP_ID, revoke=frozenset({C.AUDIO_PLAYBACK})),
    ),
    Case(
        "audio on a host without a sound server is unavailable",
        manifest(audio=(AudioMode.PLAYBACK,)),
        bare_host(),
        {C.AUDIO_PLAYBACK: G.UNAVAILABLE},
    ),
    Case(
        "storage granted; user-granted storage without a path is unavailable",
        manifest(storage=(("saves", "/home/app/saves"),)),
        bare_host(),
        {Storage("saves"): G.GRANTED, Storage("extra"): G.UNAVAILABLE},
        user=UserOverride(APP_ID, grant=frozenset({Storage("extra")})),
    ),
    Case(
        "devices could not be listed: webcam and gamepad unavailable",
        manifest(webcam=True, gamepad=True),
        dataclasses.replace(bare_host(), devices=DeviceFacts(False, "no udev")),
        {C.WEBCAM: G.UNAVAILABLE, C.GAMEPAD: G.UNAVAILABLE},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_engine_table(case: Case) -> None:
    plan = make_plan(case.manifest, case.facts, case.site, case.user)
    got = {p: s.state for p, s in ((p, plan.status(p)) for p in case.expect) if s is not None}
    assert got == case.expect
    for s in plan.statuses:  # every fixed capability is always listed
        assert s.title and s.risk
    assert {s.permission for s in plan.statuses} >= set(Capability)


def _requests(plan: LaunchPlan, kind: type) -> list[object]:
    return [r for r in plan.requests if isinstance(r, kind)]


def test_wayland_desktop_gets_one_wayland_request_and_no_x11() -> None:
    plan = make_plan(manifest(D.WAYLAND_OR_X11), desktop())
    assert _requests(plan, WaylandSocketRequest) == [
        WaylandSocketRequest(display="wayland-1", socket_path="/run/user/1000/wayland-1")
    ]
    assert _requests(plan, X11CookieRequest) == []


def test_x11_fallback_cookie_is_untrusted() -> None:
    plan = make_plan(manifest(D.WAYLAND_OR_X11), x11_host())
    cookies = _requests(plan, X11CookieRequest)
    assert cookies == [
        X11CookieRequest(trusted=False, display=":0", socket_path="/tmp/.X11-unix/X0")
    ]


@pytest.mark.parametrize("display", [D.X11, D.WAYLAND_OR_X11])
def test_cookie_stays_untrusted_when_the_gpu_is_granted_too(display: DisplayRequest) -> None:
    """x11docker turns its untrusted mode trusted once the GPU is shared; we must not."""
    host = dataclasses.replace(x11_host(), devices=desktop().devices)
    plan = make_plan(manifest(display, gpu=True), host)
    gpu = plan.status(C.GPU)
    assert gpu is not None and gpu.state is G.GRANTED
    x11 = plan.status(C.DISPLAY_X11)
    assert x11 is not None and x11.state is G.GRANTED
    trusted = plan.status(C.DISPLAY_X11_TRUSTED)
    assert trusted is not None and trusted.state is not G.GRANTED
    assert _requests(plan, X11CookieRequest) == [
        X11CookieRequest(trusted=False, display=":0", socket_path="/tmp/.X11-unix/X0")
    ]
    assert [d.path for d in plan.devices] == ["/dev/dri/renderD128"]


def test_no_security_extension_never_yields_any_cookie() -> None:
    plan = make_plan(manifest(D.X11), x11_host(security=False))
    assert _requests(plan, X11CookieRequest) == []
    status = plan.status(C.DISPLAY_X11)
    assert status is not None
    assert status.detail == "the X server lacks the SECURITY extension"


def test_trusted_cookie_only_with_trusted_capability() -> None:
    plan = make_plan(manifest(D.X11_TRUSTED), x11_host())
    assert [c.trusted for c in _requests(plan, X11CookieRequest)] == [True]  # type: ignore[attr-defined]


def test_gpu_render_nodes_and_groups() -> None:
    plan = make_plan(manifest(gpu=True), desktop())
    assert [d.path for d in plan.devices] == ["/dev/dri/renderD128"]
    assert {(g.name, g.gid) for g in plan.groups} == {("render", 109), ("video", 44)}


@pytest.mark.parametrize("runtime", [True, False])
def test_nvidia_runtime_request_or_nodes(runtime: bool) -> None:
    plan = make_plan(manifest(gpu=True), nvidia_host(runtime=runtime))
    paths = {d.path for d in plan.devices}
    if runtime:
        assert _requests(plan, NvidiaRequest) == [NvidiaRequest(NvidiaMethod.RUNTIME)]
        assert paths == {"/dev/dri/renderD128"}
    else:
        assert _requests(plan, NvidiaRequest) == []
        assert paths == {"/dev/dri/renderD128", "/dev/nvidia0", "/dev/nvidiactl"}


@pytest.mark.parametrize(
    ("cgroup_version", "rules", "mode"),
    [
        (1, [], HotplugCgroup.PER_NODE),
        (None, [], HotplugCgroup.PER_NODE),
        (2, ["c 81:* rw"], HotplugCgroup.MAJOR_PREALLOWED),
    ],
)
def test_webcam_nodes_group_hotplug(
    cgroup_version: int | None, rules: list[str], mode: HotplugCgroup
) -> None:
    host = desktop()
    host = dataclasses.replace(
        host, docker=dataclasses.replace(host.docker, cgroup_version=cgroup_version)
    )
    plan = make_plan(manifest(webcam=True), host)
    assert {d.path for d in plan.devices} == {"/dev/video0", "/dev/media0"}
    assert [g.name for g in plan.groups] == ["video"]
    # v1: the provider allows each hotplugged node itself; v2 must pre-allow the major
    assert [str(r) for r in plan.device_cgroup_rules] == rules
    (hotplug,) = _requests(plan, HotplugRequest)
    assert (hotplug.capability, hotplug.cgroup) == (C.WEBCAM, mode)  # type: ignore[attr-defined]


def test_gamepad_nodes_and_joystick_only_hotplug() -> None:
    plan = make_plan(manifest(gamepad=True), desktop())
    assert {d.path for d in plan.devices} == {"/dev/input/event5", "/dev/input/js0"}
    assert [g.name for g in plan.groups] == ["input"]
    (hotplug,) = _requests(plan, HotplugRequest)
    assert ("ID_INPUT_JOYSTICK", "1") in hotplug.match  # type: ignore[attr-defined]


def test_audio_record_flag_follows_the_grant() -> None:
    playback = make_plan(manifest(audio=(AudioMode.PLAYBACK,)), desktop())
    both = make_plan(manifest(audio=(AudioMode.PLAYBACK, AudioMode.RECORD)), desktop())
    (p,) = _requests(playback, PulseProxyRequest)
    (b,) = _requests(both, PulseProxyRequest)
    assert (p.playback, p.record) == (True, False)  # type: ignore[attr-defined]
    assert (b.playback, b.record) == (True, True)  # type: ignore[attr-defined]
    assert p.app_id == APP_ID  # type: ignore[attr-defined]


def test_network_mode_follows_the_capability() -> None:
    assert make_plan(manifest(), desktop()).hardening.network is NetworkMode.NONE
    assert make_plan(manifest(network=True), desktop()).hardening.network is NetworkMode.APP
    denied = SitePolicy(deny=frozenset({C.NETWORK}))
    assert (
        make_plan(manifest(network=True), desktop(), denied).hardening.network is NetworkMode.NONE
    )


def test_the_network_review_says_whether_the_host_is_fenced_off() -> None:
    fenced = dataclasses.replace(
        desktop(), docker=dataclasses.replace(desktop().docker, network_fenced=True)
    )
    status = make_plan(manifest(network=True), fenced).status(C.NETWORK)
    assert status is not None and "fenced from other apps and this computer" in status.detail
    why = "installing firewall rules needs root; the launcher runs as a user"
    open_ = dataclasses.replace(
        desktop(), docker=dataclasses.replace(desktop().docker, network_fence_problem=why)
    )
    status = make_plan(manifest(network=True), open_).status(C.NETWORK)
    assert status is not None
    assert status.detail.endswith(f"NOT fenced from this computer's services ({why})")


def test_storage_request() -> None:
    plan = make_plan(manifest(storage=(("saves", "/home/app/saves"),)), bare_host())
    assert _requests(plan, StorageRequest) == [StorageRequest(APP_ID, "saves", "/home/app/saves")]


def test_baseline_on_the_barest_plan() -> None:
    plan = make_plan(manifest(), bare_host())
    h = plan.hardening
    assert h.cap_drop == ("ALL",) and h.cap_add == () and not h.privileged
    assert h.no_new_privileges and h.read_only_root
    assert (h.ipc, h.pid, h.uts) == (NamespaceMode.PRIVATE,) * 3
    assert [m.target for m in h.tmpfs] == ["/tmp"]
    assert (h.user.uid, h.user.gid) == (1000, 1000)
    assert plan.devices == () and plan.requests == () and plan.groups == ()


def test_unknown_user_runs_as_nobody_with_a_note() -> None:
    facts = dataclasses.replace(bare_host(), user=UserFacts(False, "no passwd"))
    plan = make_plan(manifest(), facts)
    assert (plan.hardening.user.uid, plan.hardening.user.gid) == (65534, 65534)
    assert plan.notes


def test_cgroup_parent_follows_the_driver() -> None:
    cgroupfs = make_plan(manifest(), bare_host())
    assert cgroupfs.cgroup_parent.driver is CgroupDriverName.CGROUPFS
    assert cgroupfs.cgroup_parent.path == f"/sandbox/{APP_ID}"
    host = bare_host()
    systemd = dataclasses.replace(
        host, docker=dataclasses.replace(host.docker, cgroup_driver=CgroupDriver.SYSTEMD)
    )
    assert make_plan(manifest(), systemd).cgroup_parent.path == f"sandbox-{APP_ID}.slice"


@pytest.mark.parametrize("target", ["/proc/x", "/sys", "/dev/shm", "relative", "/a/../b"])
def test_storage_over_system_trees_is_refused(target: str) -> None:
    with pytest.raises(PolicyError):
        make_plan(manifest(storage=(("saves", target),)), bare_host())


# --- the final gate rejects hand-built bad plans -------------------------------------------------

Tamper = Callable[[LaunchPlan], LaunchPlan]
REPLACE = dataclasses.replace
TAMPERS: dict[str, Tamper] = {
    "privileged": lambda p: REPLACE(p, hardening=REPLACE(p.hardening, privileged=True)),
    "cap_add": lambda p: REPLACE(p, hardening=REPLACE(p.hardening, cap_add=("SYS_ADMIN",))),
    "host pid": lambda p: REPLACE(p, hardening=REPLACE(p.hardening, pid=NamespaceMode.HOST)),
    "host ipc": lambda p: REPLACE(p, hardening=REPLACE(p.hardening, ipc=NamespaceMode.HOST)),
    "host net": lambda p: REPLACE(p, hardening=REPLACE(p.hardening, network=NetworkMode.HOST)),
    "bridge without network": lambda p: REPLACE(
        p, hardening=REPLACE(p.hardening, network=NetworkMode.APP)
    ),
    "writable root": lambda p: REPLACE(p, hardening=REPLACE(p.hardening, read_only_root=False)),
    "docker socket": lambda p: REPLACE(
        p, mounts=(Mount("/run/d.sock", MountKind.BIND, "/var/run/docker.sock"),)
    ),
    "host root": lambda p: REPLACE(p, mounts=(Mount("/host", MountKind.BIND, "/"),)),
    "home": lambda p: REPLACE(p, mounts=(Mount("/h", MountKind.BIND, "/home/user"),)),
    "proc": lambda p: REPLACE(p, mounts=(Mount("/proc/sys", MountKind.BIND, "/x", False),)),
    "stray device": lambda p: REPLACE(p, devices=(DeviceNode("/dev/sda", 8, 0, C.GPU),)),
    "device of an ungranted capability": lambda p: REPLACE(
        p, devices=(DeviceNode("/dev/video0", 81, 0, C.WEBCAM),)
    ),
    "trusted cookie": lambda p: REPLACE(
        p, requests=(X11CookieRequest(True, ":0", "/tmp/.X11-unix/X0"),)
    ),
    "record": lambda p: REPLACE(
        p, requests=(PulseProxyRequest(APP_ID, "x", "/s", playback=True, record=True),)
    ),
    "dropped status": lambda p: REPLACE(p, statuses=p.statuses[1:]),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_invariants_reject_tampered_plans(name: str) -> None:
    m = manifest(D.X11, (AudioMode.PLAYBACK,), gpu=True)
    facts = desktop()
    cat = catalog()
    policy = merge(BUILTIN_DEFAULTS, m, SitePolicy(), None, catalog=cat)
    good = engine.plan(policy, facts, catalog=cat)
    invariants.assert_invariants(good, policy, facts)  # the untampered plan passes
    with pytest.raises(PolicyError, match="refusing the launch plan"):
        invariants.assert_invariants(TAMPERS[name](good), policy, facts)
