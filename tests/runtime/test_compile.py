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


# --- the container's config comes from the plan only: a test per image-config field ------------

# Docker's image inspect `Config` (its container config, a superset of the OCI image config), as
# Docker 20.10 and Podman 4.3 answer it plus the fields they omit when empty. A field added here
# (or by an engine: integration/test_container_config.py compares a real image's keys) fails
# test_every_image_config_field_is_decided until container_body decides it.
IMAGE_CONFIG_KEYS = {
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
    "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild",
    "Labels", "StopSignal", "StopTimeout", "Shell",
}  # fmt: skip
BODY_KEYS = {
    "Image", "Entrypoint", "Cmd", "User", "Env", "Labels", "Healthcheck", "WorkingDir",
    "StopSignal", "Hostname", "Domainname", "Tty", "OpenStdin", "StdinOnce", "AttachStdin",
    "AttachStdout", "AttachStderr", "HostConfig",
}  # fmt: skip
VOLUMES = ("/data", "/data/", "//var/cache/x", f"{STORAGE}/x")
HOSTILE = dataclasses.replace(LIVE, image_volumes=VOLUMES, image_working_dir="/opt")


def _body(target: LaunchTarget = HOSTILE, grant: Grant | None = None) -> dict[str, object]:
    return create_body(compile(_plan(), grant or Grant(), target))


def test_every_image_config_field_is_decided() -> None:
    from sandbox.runtime.container_body import IMAGE_CONFIG_FIELDS

    assert set(IMAGE_CONFIG_FIELDS) == IMAGE_CONFIG_KEYS
    body = _body()
    assert set(body) == BODY_KEYS  # a new body field is a decision too: add it above
    for key, how in IMAGE_CONFIG_FIELDS.items():
        assert (key in body) == how.startswith("set"), (key, how)


def test_the_entrypoint_is_cleared_as_both_engines_need() -> None:
    # measured: Docker 20.10 clears it for [] and [""], Podman 4.3's compat API only for [""]
    assert _body()["Entrypoint"] == [""]


def test_the_command_is_the_manifests_and_the_args_as_given() -> None:
    odd = dataclasses.replace(HOSTILE, args=("", "$HOME", "a b", "--x=;rm -rf /"))
    assert _body(odd)["Cmd"] == ["/opt/game", "", "$HOME", "a b", "--x=;rm -rf /"]


def test_no_healthcheck_runs() -> None:
    assert _body()["Healthcheck"] == {"Test": ["NONE"]}


def test_each_image_volume_is_masked_by_a_read_only_tmpfs() -> None:
    spec = compile(_plan(), Grant(), HOSTILE)
    masks = [m for m in spec.mounts if m.target != "/tmp"]
    assert [m.target for m in masks] == ["/data", "/var/cache/x", f"{STORAGE}/x"]
    assert all(m.kind is MountKind.TMPFS and m.read_only and m.size_bytes is None for m in masks)
    mounts = create_body(spec)["HostConfig"]["Mounts"]
    data = next(m for m in mounts if m["Target"] == "/data")
    assert data == {
        "Type": "tmpfs",
        "Target": "/data",
        "ReadOnly": True,
        "TmpfsOptions": {"Mode": 0o555},
    }
    tmp = next(m for m in mounts if m["Target"] == "/tmp")
    assert tmp["ReadOnly"] is False and tmp["TmpfsOptions"]["Mode"] == 0o1777


def test_a_volume_a_mount_already_stands_on_is_not_masked_twice() -> None:
    # the engines create no anonymous volume under a mount at the same path (measured on both)
    save = Mount("/data/saves", MountKind.BIND, f"{STORAGE}/saves", read_only=False)
    target = dataclasses.replace(LIVE, image_volumes=("/tmp", "/data/saves", "/data"))
    spec = compile(_plan(), Grant(mounts=(save,)), target)
    assert [(m.target, m.kind, m.read_only) for m in spec.mounts] == [
        ("/tmp", MountKind.TMPFS, False),
        ("/data/saves", MountKind.BIND, False),
        ("/data", MountKind.TMPFS, True),  # above the storage bind: masked, the bind stays
    ]


@pytest.mark.parametrize("volume", ["/", "//", "data", "", "/proc/x", "/sys/fs"])
def test_a_volume_that_cannot_be_masked_is_refused(volume: str) -> None:
    with pytest.raises(LaunchError, match=r"VOLUME|refusing the"):
        compile(_plan(), Grant(), dataclasses.replace(LIVE, image_volumes=(volume,)))


def test_the_sandboxs_env_is_the_bodys_and_each_name_once() -> None:
    # The engines put the body's Env over the image's ENV for the same name (measured on both:
    # integration/test_container_config.py); here: every variable the sandbox sets is in it.
    grant = Grant(env=(EnvVar("DISPLAY", ":7"), EnvVar("HOME", "/home/app")))
    env = _body(grant=grant)["Env"]
    assert env == [f"SANDBOX_APP_ID={APP_ID}", "DISPLAY=:7", "HOME=/home/app"]


@pytest.mark.parametrize(("uid", "gid"), [(1000, 1001), (0, 0), (65534, 65534)])
def test_the_user_is_the_plans_uid_always(uid: int, gid: int) -> None:
    plan = _plan(hardening=baseline_hardening(UserSpec(uid, gid)))
    assert create_body(compile(plan, Grant(), HOSTILE))["User"] == f"{uid}:{gid}"


@pytest.mark.parametrize(
    ("workdir", "expected"),
    [("/opt", "/opt"), ("/opt/../srv//x/", "/srv/x"), ("", "/"), ("rel/dir", "/"), ("//w", "/w")],
)
def test_the_working_dir_is_the_images_only_when_absolute(workdir: str, expected: str) -> None:
    target = dataclasses.replace(LIVE, image_working_dir=workdir)
    assert _body(target)["WorkingDir"] == expected


def test_stop_signal_and_domain_are_the_sandboxs() -> None:
    body = _body()
    assert (body["StopSignal"], body["Domainname"]) == ("SIGTERM", "")
