"""GPU diagnosis: how this host can give a container the GPU and whether GL can work; pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sandbox.policy.facts import HostFacts

NVIDIA_GPU_CDI_PREFIX = "nvidia.com/gpu"
NVIDIA_RUNTIME = "nvidia"


class GpuAccess(enum.StrEnum):
    """How the container would get the GPU; the engine's plan follows the same order."""

    NONE = "none"
    RENDER_NODES = "render-nodes"  # /dev/dri/renderD*: Mesa (Intel, AMD, nouveau, nvidia-drm)
    NVIDIA_RUNTIME = "nvidia-runtime"  # the engine injects nodes AND matching driver libraries
    NVIDIA_CDI = "nvidia-cdi"  # a CDI device request: nodes and libraries from the CDI spec
    NVIDIA_NODES = "nvidia-nodes"  # plain /dev/nvidia* nodes: libraries must come from the image


class GlOutlook(enum.StrEnum):
    HARDWARE = "hardware"  # GL/Vulkan reach the GPU with what the engine provides
    IMAGE_LIBRARIES = "image-libraries"  # only if the image ships the matching NVIDIA libraries
    SOFTWARE = "software"  # llvmpipe: GL works, on the CPU


@dataclass(frozen=True)
class GpuDiagnosis:
    access: tuple[GpuAccess, ...]  # every way this host offers, preferred first
    gl: GlOutlook
    nvidia_driver: str | None
    summary: str  # one line for `sandbox probe`
    problems: tuple[str, ...] = ()  # plain words, each a reason GL may not work as hoped


def nvidia_cdi_devices(facts: HostFacts) -> tuple[str, ...]:
    return tuple(c for c in facts.docker.cdi_devices if c.startswith(NVIDIA_GPU_CDI_PREFIX))


def nvidia_present(facts: HostFacts) -> bool:
    d = facts.devices
    return bool(d.nvidia.nodes) or any((g.vendor or "").upper() == "NVIDIA" for g in d.gpus)


def nvidia_engine_method(facts: HostFacts) -> GpuAccess:
    """The engine's own NVIDIA support: the runtime wins over CDI; NVIDIA_NODES when neither."""
    if not facts.docker.available:
        return GpuAccess.NVIDIA_NODES
    if NVIDIA_RUNTIME in facts.docker.runtimes:
        return GpuAccess.NVIDIA_RUNTIME
    if nvidia_cdi_devices(facts):
        return GpuAccess.NVIDIA_CDI
    return GpuAccess.NVIDIA_NODES


def _driver(version: str | None) -> str:
    return f"driver {version}" if version else "an unknown driver version"


def diagnose_gpu(facts: HostFacts, *, untrusted_x11_only: bool = False) -> GpuDiagnosis:
    """What `gpu` gives on this host and why GL may not reach the GPU.

    untrusted_x11_only: the app's only display is an untrusted X11 connection, which hides
    GLX and DRI3 (an untrusted client sees only BIG-REQUESTS and XC-MISC).
    """
    d = facts.devices
    version = d.nvidia.driver_version
    problems: list[str] = []
    if not d.available and d.nvidia.nodes:
        problems.append(
            f"devices could not be listed ({d.reason or 'unknown'}): DRM render nodes are "
            "unknown; the NVIDIA nodes were found in /dev directly"
        )
    elif not d.available:
        problems.append(
            f"devices could not be listed ({d.reason or 'unknown'}): "
            "GL will fall back to software rendering (llvmpipe)"
        )
        return GpuDiagnosis(
            (GpuAccess.NONE,), GlOutlook.SOFTWARE, version, "unknown", tuple(problems)
        )
    nvidia = nvidia_present(facts)
    method = nvidia_engine_method(facts) if nvidia else GpuAccess.NONE
    access = _access(facts, method)
    gl = _gl_outlook(facts, access, method, nvidia=nvidia)
    if not access:
        problems.append("no GPU render node: GL will fall back to software rendering (llvmpipe)")
    problems += _nvidia_problems(facts, method, nvidia=nvidia)
    if untrusted_x11_only and access:
        problems.append(
            "the untrusted X11 connection hides GLX and DRI3: GL through X11 falls back to "
            "software; use EGL (Wayland, or headless/surfaceless) to reach the GPU"
        )
    summary = "; ".join(_summary_parts(facts, method, nvidia=nvidia)) or "no GPU"
    return GpuDiagnosis(tuple(access) or (GpuAccess.NONE,), gl, version, summary, tuple(problems))


def _access(facts: HostFacts, method: GpuAccess) -> list[GpuAccess]:
    """Every way this host offers the GPU, preferred first."""
    d = facts.devices
    access: list[GpuAccess] = []
    if method in (GpuAccess.NVIDIA_RUNTIME, GpuAccess.NVIDIA_CDI):
        access.append(method)
    if d.gpus:
        access.append(GpuAccess.RENDER_NODES)
    if method is GpuAccess.NVIDIA_NODES and d.nvidia.nodes:
        access.append(GpuAccess.NVIDIA_NODES)
    return access


def _gl_outlook(
    facts: HostFacts, access: list[GpuAccess], method: GpuAccess, *, nvidia: bool
) -> GlOutlook:
    if not access:
        return GlOutlook.SOFTWARE
    if method is GpuAccess.NVIDIA_NODES and not facts.devices.gpus:
        return GlOutlook.IMAGE_LIBRARIES
    if method in (GpuAccess.NVIDIA_RUNTIME, GpuAccess.NVIDIA_CDI) or not nvidia:
        return GlOutlook.HARDWARE
    # an NVIDIA render node without runtime/CDI: Mesa has no driver for nvidia-drm render
    # nodes, so GL still needs NVIDIA's libraries from the image
    return GlOutlook.IMAGE_LIBRARIES


def _summary_parts(facts: HostFacts, method: GpuAccess, *, nvidia: bool) -> list[str]:
    d = facts.devices
    parts: list[str] = []
    if d.gpus:
        parts.append(
            "render nodes "
            + ", ".join(
                f"{g.node} ({g.vendor or g.vendor_id or '?'}, {g.driver or '?'})" for g in d.gpus
            )
        )
    if nvidia:
        how = {
            GpuAccess.NVIDIA_RUNTIME: "the engine's nvidia runtime injects nodes and libraries",
            GpuAccess.NVIDIA_CDI: "CDI " + ", ".join(nvidia_cdi_devices(facts)),
            GpuAccess.NVIDIA_NODES: "plain device nodes (no nvidia runtime or CDI in the engine)",
        }[method]
        parts.append(f"NVIDIA {_driver(d.nvidia.driver_version)}: {how}")
    if d.nvidia.caps:
        parts.append(f"{len(d.nvidia.caps)} MIG capability node(s), never granted")
    return parts


def _nvidia_problems(facts: HostFacts, method: GpuAccess, *, nvidia: bool) -> list[str]:
    d = facts.devices
    problems: list[str] = []
    if nvidia and method is GpuAccess.NVIDIA_NODES:
        problems.append(
            f"NVIDIA without the nvidia runtime or CDI: the image must ship NVIDIA user-space "
            f"libraries (libGLX_nvidia, libEGL_nvidia, libcuda) matching "
            f"{_driver(d.nvidia.driver_version)} exactly, or the engine must inject them; "
            "otherwise GL falls back to llvmpipe and CUDA fails"
        )
    if nvidia and not d.gpus:
        problems.append(
            "no DRM render node for the NVIDIA GPU (nvidia-drm not loaded): Wayland clients "
            "cannot share GPU buffers (no GBM/dmabuf); EGL on NVIDIA's device platform, GLX "
            "through a trusted X server and CUDA still work"
        )
    return problems
