"""Builders for engine tests: manifests and HostFacts for a few kinds of host, all in memory."""

from __future__ import annotations

import dataclasses

from sandbox.config.catalog import load_catalog
from sandbox.policy import engine
from sandbox.policy.catalog import Catalog
from sandbox.policy.facts import (
    AudioFacts,
    AudioServerKind,
    CgroupDriver,
    CgroupFacts,
    DeviceFacts,
    DeviceNode,
    DockerFacts,
    Gamepad,
    GpuDevice,
    HostFacts,
    NvidiaFacts,
    UserFacts,
    WaylandFacts,
    Webcam,
    X11Facts,
)
from sandbox.policy.layers import BUILTIN_DEFAULTS, SitePolicy, UserOverride, merge
from sandbox.policy.manifest import AppInfo, Capabilities, Manifest, StorageSpec
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.vocabulary import AudioMode, DisplayRequest

APP_ID = "com.example.Game"
GROUPS = (("render", 109), ("video", 44), ("input", 105), ("audio", 29))


def catalog() -> Catalog:
    return load_catalog()


def manifest(
    display: DisplayRequest | None = None,
    audio: tuple[AudioMode, ...] = (),
    *,
    gpu: bool = False,
    webcam: bool = False,
    gamepad: bool = False,
    network: bool = False,
    storage: tuple[tuple[str, str], ...] = (),
    app_id: str = APP_ID,
) -> Manifest:
    return Manifest(
        app=AppInfo(id=app_id, name="Example Game", version="1.2.0", command=("/bin/game",)),
        capabilities=Capabilities(
            display=display,
            audio=frozenset(audio),
            gpu=gpu,
            webcam=webcam,
            gamepad=gamepad,
            network=network,
            storage=tuple(StorageSpec(n, p) for n, p in storage),
        ),
    )


def bare_host() -> HostFacts:
    """A headless server: docker and a user, nothing else (like the CI machine)."""
    return HostFacts(
        docker=DockerFacts(True, cgroup_driver=CgroupDriver.CGROUPFS, runtimes=("runc",)),
        x11=X11Facts(False, "DISPLAY is not set"),
        wayland=WaylandFacts(False, "WAYLAND_DISPLAY is not set"),
        audio=AudioFacts(False, "no server"),
        devices=DeviceFacts(True),
        cgroups=CgroupFacts(True),
        user=UserFacts(True, uid=1000, gid=1000, name="user", home="/home/user", group_ids=GROUPS),
    )


def x11_host(*, security: bool = True) -> HostFacts:
    return dataclasses.replace(
        bare_host(),
        x11=X11Facts(
            True,
            display=":0",
            display_number=0,
            socket_path="/tmp/.X11-unix/X0",
            security_extension=security,
        ),
    )


def desktop() -> HostFacts:
    """A full desktop: Wayland and Xwayland, PulseAudio, an Intel GPU, a webcam, a gamepad."""
    return dataclasses.replace(
        x11_host(),
        wayland=WaylandFacts(True, display="wayland-1", socket_path="/run/user/1000/wayland-1"),
        audio=AudioFacts(
            True,
            socket_path="/run/user/1000/pulse/native",
            server=AudioServerKind.PULSEAUDIO,
            server_name="pulseaudio",
            default_source="alsa_input.usb-mic",
        ),
        devices=DeviceFacts(
            True,
            gpus=(GpuDevice("/dev/dri/renderD128", 226, 128, vendor="Intel", driver="i915"),),
            webcams=(
                Webcam(
                    "/dev/video0",
                    81,
                    0,
                    product="Test Webcam",
                    media=DeviceNode("/dev/media0", 237, 0),
                ),
            ),
            gamepads=(
                Gamepad(
                    "/dev/input/event5",
                    13,
                    69,
                    name="Pad",
                    js=(DeviceNode("/dev/input/js0", 13, 0),),
                ),
            ),
        ),
    )


def nvidia_host(*, runtime: bool) -> HostFacts:
    base = desktop()
    nodes = (DeviceNode("/dev/nvidia0", 195, 0), DeviceNode("/dev/nvidiactl", 195, 255))
    return dataclasses.replace(
        base,
        docker=dataclasses.replace(
            base.docker, runtimes=("runc", "nvidia") if runtime else ("runc",)
        ),
        devices=dataclasses.replace(
            base.devices,
            gpus=(GpuDevice("/dev/dri/renderD128", 226, 128, vendor="NVIDIA", driver="nvidia"),),
            nvidia=NvidiaFacts(nodes=nodes, driver_version="550.1"),
        ),
    )


def make_plan(
    m: Manifest,
    facts: HostFacts,
    site: SitePolicy | None = None,
    user: UserOverride | None = None,
) -> LaunchPlan:
    cat = catalog()
    policy = merge(BUILTIN_DEFAULTS, m, site or SitePolicy(), user, catalog=cat)
    return engine.plan(policy, facts, catalog=cat)
