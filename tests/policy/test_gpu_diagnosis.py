"""GPU grants and diagnosis on the facts of a real NVIDIA H200 host and on the shared test hosts."""

from __future__ import annotations

import dataclasses

import pytest
from engine_support import bare_host, desktop, make_plan, manifest, nvidia_host, x11_host

from sandbox.policy.facts import DeviceFacts, DeviceNode, DockerFacts, HostFacts, NvidiaFacts
from sandbox.policy.gpu_diagnosis import GlOutlook, GpuAccess, diagnose_gpu
from sandbox.policy.plan import GrantState, NvidiaMethod, NvidiaRequest
from sandbox.policy.vocabulary import Capability, DisplayRequest

H200_DRIVER = "580.159.04"
# Seen on a lent H200 (Firecracker VM): no /dev/dri, no nvidia-drm, no udev database, open
# kernel module, no container engine.
H200_NODES = (
    DeviceNode("/dev/nvidia-uvm", 238, 0),
    DeviceNode("/dev/nvidia-uvm-tools", 238, 1),
    DeviceNode("/dev/nvidia0", 195, 0),
    DeviceNode("/dev/nvidiactl", 195, 255),
)
H200_CAPS = (
    DeviceNode("/dev/nvidia-caps/nvidia-cap1", 241, 1),
    DeviceNode("/dev/nvidia-caps/nvidia-cap2", 241, 2),
)


def h200_host(docker: DockerFacts | None = None) -> HostFacts:
    base = bare_host()
    return dataclasses.replace(
        base,
        docker=docker or DockerFacts(False, "no container engine installed"),
        devices=DeviceFacts(
            True,
            nvidia=NvidiaFacts(nodes=H200_NODES, driver_version=H200_DRIVER, caps=H200_CAPS),
            udev_properties=False,
        ),
    )


def engine_with(*, runtimes: tuple[str, ...] = ("runc",), cdi: tuple[str, ...] = ()) -> DockerFacts:
    return DockerFacts(True, runtimes=runtimes, cdi_devices=cdi, cgroup_version=2)


@pytest.mark.parametrize("docker", [None, engine_with()], ids=["no-engine", "runc-only"])
def test_h200_without_nvidia_runtime_grants_plain_nodes_never_caps(
    docker: DockerFacts | None,
) -> None:
    facts = h200_host(docker)
    plan = make_plan(manifest(gpu=True), facts)
    status = plan.status(Capability.GPU)
    assert status is not None and status.state is GrantState.GRANTED
    assert {(d.path, d.major, d.minor) for d in plan.devices} == {
        (n.node, n.major, n.minor) for n in H200_NODES
    }
    granted_paths = {d.path for d in plan.devices}
    assert not granted_paths & {c.node for c in H200_CAPS}
    assert not any(isinstance(r, NvidiaRequest) for r in plan.requests)
    assert {g.name for g in plan.groups} == {"render", "video"}
    # the user is told the image must match the host's driver exactly
    assert H200_DRIVER in status.detail
    assert any("matching driver " + H200_DRIVER in n for n in plan.notes)
    assert any("nvidia-drm not loaded" in n for n in plan.notes)


def test_h200_diagnosis() -> None:
    d = diagnose_gpu(h200_host())
    assert d.access == (GpuAccess.NVIDIA_NODES,)
    assert d.gl is GlOutlook.IMAGE_LIBRARIES
    assert d.nvidia_driver == H200_DRIVER
    assert "plain device nodes" in d.summary and "2 MIG capability node(s)" in d.summary


@pytest.mark.parametrize(
    ("docker", "method", "devices"),
    [
        (engine_with(runtimes=("runc", "nvidia")), NvidiaMethod.RUNTIME, ()),
        (
            engine_with(cdi=("nvidia.com/gpu=0", "nvidia.com/gpu=all", "vendor.com/x=1")),
            NvidiaMethod.CDI,
            ("nvidia.com/gpu=0", "nvidia.com/gpu=all"),
        ),
        (
            engine_with(runtimes=("runc", "nvidia"), cdi=("nvidia.com/gpu=0",)),
            NvidiaMethod.RUNTIME,
            (),
        ),
    ],
)
def test_h200_prefers_the_engines_device_requests(
    docker: DockerFacts, method: NvidiaMethod, devices: tuple[str, ...]
) -> None:
    plan = make_plan(manifest(gpu=True), h200_host(docker))
    assert [r for r in plan.requests if isinstance(r, NvidiaRequest)] == [
        NvidiaRequest(method, devices)
    ]
    assert plan.devices == ()  # the engine injects the nodes (and the libraries)
    assert not any("matching driver" in n for n in plan.notes)


def test_gpu_with_nothing_is_unavailable_and_says_llvmpipe() -> None:
    plan = make_plan(manifest(gpu=True), bare_host())
    status = plan.status(Capability.GPU)
    assert status is not None and status.state is GrantState.UNAVAILABLE
    assert plan.devices == ()
    assert any("llvmpipe" in n for n in plan.notes)
    assert diagnose_gpu(bare_host()).gl is GlOutlook.SOFTWARE


def test_intel_render_node_is_hardware_gl() -> None:
    d = diagnose_gpu(desktop())
    assert (d.access, d.gl, d.problems) == ((GpuAccess.RENDER_NODES,), GlOutlook.HARDWARE, ())


def test_nvidia_render_node_with_runtime() -> None:
    d = diagnose_gpu(nvidia_host(runtime=True))
    assert d.access == (GpuAccess.NVIDIA_RUNTIME, GpuAccess.RENDER_NODES)
    assert d.gl is GlOutlook.HARDWARE
    without = diagnose_gpu(nvidia_host(runtime=False))
    assert without.gl is GlOutlook.IMAGE_LIBRARIES
    assert any("550.1" in p for p in without.problems)


def test_untrusted_x11_only_warns_about_glx() -> None:
    facts = dataclasses.replace(x11_host(), devices=desktop().devices)
    plan = make_plan(manifest(DisplayRequest.X11, gpu=True), facts)
    assert any("hides GLX" in n for n in plan.notes)
    wayland = make_plan(manifest(DisplayRequest.WAYLAND_OR_X11, gpu=True), desktop())
    assert not any("GLX" in n for n in wayland.notes)


def test_gpu_not_requested_adds_no_note() -> None:
    assert make_plan(manifest(), h200_host()).notes == ()


def test_devices_unlisted_is_software() -> None:
    facts = dataclasses.replace(bare_host(), devices=DeviceFacts(False, "libudev missing"))
    d = diagnose_gpu(facts)
    assert d.gl is GlOutlook.SOFTWARE and "libudev missing" in d.problems[0]


def test_probe_table_shows_the_h200_diagnosis() -> None:
    from sandbox.cli.probe_cmd import render_table

    table = render_table(h200_host())
    (gpu_line,) = [line for line in table.splitlines() if line.startswith("gpu ")]
    assert "NVIDIA driver 580.159.04" in gpu_line and "nvidia-nodes" in gpu_line
    assert "matching driver 580.159.04" in table
    assert "no udevd" in table


def test_h200_without_pyudev_still_grants_the_nvidia_nodes() -> None:
    """As seen on the real H200 host: no pyudev there, yet /dev/nvidia* are found directly."""
    base = h200_host()
    facts = dataclasses.replace(
        base,
        devices=dataclasses.replace(
            base.devices, available=False, reason="pyudev cannot load libudev"
        ),
    )
    plan = make_plan(manifest(gpu=True, gamepad=True), facts)
    gpu = plan.status(Capability.GPU)
    assert gpu is not None and gpu.state is GrantState.GRANTED
    assert {d.path for d in plan.devices} == {n.node for n in H200_NODES}
    pad = plan.status(Capability.GAMEPAD)
    assert pad is not None and pad.state is GrantState.UNAVAILABLE
    d = diagnose_gpu(facts)
    assert d.access == (GpuAccess.NVIDIA_NODES,) and d.gl is GlOutlook.IMAGE_LIBRARIES
    assert any("render nodes are unknown" in p for p in d.problems)
