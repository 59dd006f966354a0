"""The never-list for mounts, as a pure check of path strings; it may not touch the filesystem."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from sandbox.policy.plan import Mount, MountKind

# A bind of one of these, or of a dir above one, hands the app the host's root, a home, the
# kernel's interfaces, every device node (nodes come as DeviceNodes, never as mounts), the host's
# configuration and programs, or the engine's image store.
PROTECTED_ROOTS = (
    "/",
    "/home",
    "/root",
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/usr",
    "/var/lib/docker",
    "/var/lib/containers",
)
# Nothing at or below these may be a bind source: kernel interfaces, device nodes, image stores.
NO_SOURCE_BELOW = ("/proc", "/sys", "/dev", "/var/lib/docker", "/var/lib/containers")
# Container engine sockets and their dirs: access to one is root on the host. A bind at, below or
# above one of them is refused.
ENGINE_PATHS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/docker",
    "/var/run/docker",
    "/run/podman",
    "/var/run/podman",
    "/run/containerd",
    "/var/run/containerd",
    "/run/crio",
    "/var/run/crio",
)
RUNTIME_DIR_ENGINE_PATHS = ("podman", "docker.sock", "docker", "containerd")  # rootless engines
ENGINE_SOCKET_NAMES = ("docker.sock", "podman.sock", "containerd.sock", "crio.sock")
NO_TARGET_BELOW = ("/proc", "/sys")


@dataclass(frozen=True)
class MountContext:
    """What the check must know about this user and instance, handed in by the caller."""

    home: str | None = None  # the user's home; None when the user probe found none
    runtime_dir: str | None = None  # $XDG_RUNTIME_DIR, where rootless engines keep sockets
    # The app's own dirs (its storage dir, the instance dir): the only writable bind sources.
    writable_roots: tuple[str, ...] = ()


def at_or_below(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _normalized(path: str) -> bool:
    return path.startswith("/") and posixpath.normpath(path) == path


def mount_problem(m: Mount, ctx: MountContext) -> str | None:
    """Why this mount may never reach a container, in words naming it; None when it may."""
    problem = _target_problem(m.target)
    if problem is not None:
        return f"mount at {m.target!r}: {problem}"
    if m.kind is not MountKind.BIND:
        return None
    src = m.source or ""
    problem = _source_problem(src, ctx) or _writable_problem(m, src, ctx)
    return None if problem is None else f"bind mount of {src!r} at {m.target!r}: {problem}"


def _target_problem(target: str) -> str | None:
    if not _normalized(target) or target == "/":
        return "the target is not a normalized absolute path below /"
    for root in NO_TARGET_BELOW:
        if at_or_below(target, root):
            return f"a mount over the container's {root}"
    return None


def _source_problem(src: str, ctx: MountContext) -> str | None:
    if not _normalized(src):
        return "the source is not a normalized absolute path"
    protected = PROTECTED_ROOTS + ((ctx.home,) if ctx.home else ())
    for root in protected:
        if at_or_below(root, src):
            return f"it exposes the host's {root}"
    for root in NO_SOURCE_BELOW:
        if at_or_below(src, root):
            return f"nothing under the host's {root} may be mounted"
    return _engine_problem(src, ctx)


def _engine_problem(src: str, ctx: MountContext) -> str | None:
    engine: tuple[str, ...] = ENGINE_PATHS
    if ctx.runtime_dir:
        engine += tuple(posixpath.join(ctx.runtime_dir, p) for p in RUNTIME_DIR_ENGINE_PATHS)
    for path in engine:
        if at_or_below(src, path) or at_or_below(path, src):
            return f"it exposes the container engine at {path}"
    if any(part in ENGINE_SOCKET_NAMES for part in src.split("/")):
        return "it exposes a container engine socket"
    return None


def _writable_problem(m: Mount, src: str, ctx: MountContext) -> str | None:
    if not m.read_only and not any(at_or_below(src, r) for r in ctx.writable_roots if r):
        return "only the app's own storage and instance dirs may be writable"
    return None
