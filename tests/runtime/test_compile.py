"""compile() is pure: plan + grant -> ContainerSpec, baseline intact, clashes refused."""

from __future__ import annotations

import dataclasses
import posixpath

import pytest

from sandbox.errors import LaunchError
from sandbox.host.names import LABEL_APP_ID, LABEL_MANAGED
from sandbox.policy.manifest import AppInfo
from sandbox.policy.plan import (
    CgroupDriverName,
    CgroupParent,
    DeviceNode,
    EnvVar,
    Labels,
    LaunchPlan,
    Limits,
    Mount,
    MountKind,
    NetworkMode,
    UserSpec,
    baseline_hardening,
)
from sandbox.policy.vocabulary import Capability
from sandbox.providers.grant import Grant, combine
from sandbox.runtime.compile import LaunchTarget, compile, hostname_for
from sandbox.runtime.container_body import create_body

APP_ID = "com.example.Game"


def _plan(**changes: object) -> LaunchPlan:
    plan = LaunchPlan(
        app=AppInfo(APP_ID, "Game", "1.2", ("/opt/game",)),
        statuses=(),
        hardening=baseline_hardening(UserSpec(1000, 1001)),
        limits=Limits(memory_bytes=512 << 20, cpus=1.5, pids=64),
        labels=Labels(APP_ID, "1.2"),
        cgroup_parent=CgroupParent(CgroupDriverName.CGROUPFS, f"/sandbox/{APP_ID}"),
        env=(EnvVar("SANDBOX_APP_ID", APP_ID),),
    )
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


HOME = "/home/alice"
RUNTIME_DIR = "/run/user/1000"
STORAGE = f"{HOME}/.local/share/sandbox/apps/{APP_ID}"
INSTANCE = f"{RUNTIME_DIR}/sandbox/instances/abc"
TARGET = LaunchTarget(
    image="game:1",
    launcher="42:7",
    instance_dir="/run/x",
    args=("--fast",),
    home=HOME,
    runtime_dir=RUNTIME_DIR,
    storage_dir="/data",
)


def test_baseline_and_limits_reach_the_spec() -> None:
    spec = compile(_plan(), Grant(), TARGET)
    assert (spec.uid, spec.gid, spec.user) == (1000, 1001, "1000:1001")
    assert spec.cap_drop == ("ALL",) and spec.cap_add == ()
    assert spec.no_new_privileges and spec.read_only_root
    assert spec.network is NetworkMode.NONE
    assert spec.cgroup_parent == f"/sandbox/{APP_ID}"
    assert (spec.memory_bytes, spec.nano_cpus, spec.pids_limit) == (512 << 20, 1_500_000_000, 64)
    assert spec.command == ("/opt/game", "--fast")
    assert spec.label(LABEL_APP_ID) == APP_ID and spec.label(LABEL_MANAGED) == "1"
    assert [m.target for m in spec.mounts] == ["/tmp"]


def test_grants_are_merged() -> None:
    save = Mount("/home/app/save", MountKind.BIND, "/data/saves", read_only=False)
    node = DeviceNode("/dev/dri/renderD128", 226, 128, Capability.GPU)
    grant = combine(
        [
            Grant(mounts=(save,), env=(EnvVar("DISPLAY", ":1"),), hostname="h"),
            Grant(devices=(node,), group_ids=(44,)),
        ]
    )
    spec = compile(_plan(), grant, TARGET)
    assert save in spec.mounts and node in spec.devices
    assert EnvVar("DISPLAY", ":1") in spec.env and spec.hostname == "h" and spec.group_ids == (44,)


@pytest.mark.parametrize(
    "grant",
    [
        Grant(mounts=(Mount("/tmp", MountKind.BIND, "/x"),)),  # over the baseline tmpfs
        Grant(mounts=(Mount("/run/d", MountKind.BIND, "/var/run/docker.sock"),)),
        Grant(mounts=(Mount("relative", MountKind.BIND, "/x"),)),
        Grant(env=(EnvVar("SANDBOX_APP_ID", "other"),)),
    ],
)
def test_clashes_and_forbidden_mounts_are_refused(grant: Grant) -> None:
    with pytest.raises(LaunchError):
        compile(_plan(), grant, TARGET)


def test_combine_refuses_two_hostnames() -> None:
    from sandbox.errors import ProviderError

    with pytest.raises(ProviderError):
        combine([Grant(hostname="a"), Grant(hostname="b")])


def test_compile_is_deterministic_and_engine_body_is_hardened() -> None:
    a, b = compile(_plan(), Grant(), TARGET), compile(_plan(), Grant(), TARGET)
    assert a == b
    body = create_body(a)["HostConfig"]
    assert body["NetworkMode"] == "none" and body["ReadonlyRootfs"] is True
    assert body["CapDrop"] == ["ALL"] and body["SecurityOpt"] == ["no-new-privileges"]
    assert body["Privileged"] is False and body["CgroupParent"] == f"/sandbox/{APP_ID}"


def test_hostname_is_a_dns_label() -> None:
    assert hostname_for("com.example.My_Game-2") == "my-game-2"


def _bind(source: str, target: str = "/mnt/x", read_only: bool = True) -> Grant:
    return Grant(mounts=(Mount(target, MountKind.BIND, source, read_only=read_only),))


LIVE = dataclasses.replace(TARGET, instance_dir=INSTANCE, storage_dir=STORAGE)


@pytest.mark.parametrize(
    "source",
    [
        "/",
        "/home",
        "/root",
        HOME,
        "/proc",
        "/proc/1/root",
        "/sys",
        "/sys/fs/cgroup",
        "/dev",
        "/dev/dri/renderD128",  # device nodes come as devices, never as mounts
        "/etc",
        "/usr",
        "/var",  # above /var/lib/docker
        "/var/lib",
        "/var/lib/docker",
        "/var/lib/docker/overlay2",
        "/var/lib/containers",
        "/var/lib/containers/storage",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run",  # above the engine sockets
        "/var/run",
        "/run/podman",
        "/run/podman/podman.sock",
        "/run/containerd",
        "/run/containerd/containerd.sock",
        f"{RUNTIME_DIR}/podman",
        f"{RUNTIME_DIR}/podman/podman.sock",
        f"{RUNTIME_DIR}/docker.sock",
        RUNTIME_DIR,  # above the rootless sockets
        "/srv/docker.sock",  # an engine socket by name, wherever it lies
        "/tmp/x/docker.sock/inner",
        "/home/alice/../../etc",  # not normalized
        "relative/path",
    ],
)
def test_forbidden_bind_sources_are_refused_naming_the_mount(source: str) -> None:
    with pytest.raises(LaunchError, match="refusing the") as info:
        compile(_plan(), _bind(source), LIVE)
    assert "/mnt/x" in str(info.value)


@pytest.mark.parametrize("target", ["/proc", "/proc/sys", "/sys", "/sys/fs/cgroup", "/", "x"])
def test_targets_over_proc_or_sys_are_refused(target: str) -> None:
    with pytest.raises(LaunchError, match=repr(target)):
        compile(_plan(), _bind(f"{INSTANCE}/pulse", target), LIVE)


@pytest.mark.parametrize(
    "source",
    [
        "/tmp/.X11-unix/X0",  # the X socket is fine read-only...
        "/srv/games",
        f"{HOME}/Documents",
        f"{RUNTIME_DIR}/wayland-grants",
        f"{STORAGE}/../other.app/saves",
    ],
)
def test_writable_binds_outside_the_apps_own_dirs_are_refused(source: str) -> None:
    with pytest.raises(LaunchError, match="writable"):
        compile(_plan(), _bind(posixpath.normpath(source), read_only=False), LIVE)


def test_a_writable_bind_needs_a_known_storage_dir() -> None:
    bare = LaunchTarget(image="game:1", launcher="42:7", instance_dir=INSTANCE)
    with pytest.raises(LaunchError, match="writable"):
        compile(_plan(), _bind(f"{STORAGE}/saves", read_only=False), bare)


def test_what_the_real_providers_grant_passes() -> None:
    # The shapes of the shipped providers' grants: X11 socket and private Xauthority, the
    # Wayland grant dir, the PulseAudio proxy dir (all read-only), and storage read-write.
    grant = combine(
        [
            Grant(
                mounts=(
                    Mount("/tmp/.X11-unix/X0", MountKind.BIND, "/tmp/.X11-unix/X0"),
                    Mount("/run/sandbox/Xauthority", MountKind.BIND, f"{INSTANCE}/Xauthority"),
                )
            ),
            _bind(f"{RUNTIME_DIR}/sandbox-wayland/{APP_ID}-abc", "/run/user/1000"),
            _bind(f"{INSTANCE}/pulse", "/run/sandbox/pulse"),
            _bind(f"{STORAGE}/saves", "/home/app/.local/share/game", read_only=False),
            _bind(f"{INSTANCE}/scratch", "/var/scratch", read_only=False),
            _bind("/usr/share/fonts", "/usr/share/fonts"),  # below /usr, read-only: allowed
        ]
    )
    spec = compile(_plan(), grant, LIVE)
    assert {m.target for m in grant.mounts} <= {m.target for m in spec.mounts}
