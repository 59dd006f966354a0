"""Wayland probe: find the compositor socket as libwayland does, connect bounded; sends nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.host.bounded_io import Deadline, Missing, check_unix
from sandbox.policy.facts import WaylandFacts

DEFAULT_DISPLAY = "wayland-0"


@dataclass(frozen=True)
class WaylandSocket:
    display: str  # WAYLAND_DISPLAY as given, or the default
    path: str


def resolve_socket(env: Mapping[str, str]) -> WaylandSocket | Missing:
    """WAYLAND_DISPLAY is an absolute path or a name inside XDG_RUNTIME_DIR (libwayland rules)."""
    display = env.get("WAYLAND_DISPLAY", "") or DEFAULT_DISPLAY
    if display.startswith("/"):
        return WaylandSocket(display, display)
    runtime_dir = env.get("XDG_RUNTIME_DIR", "")
    if not runtime_dir:
        return Missing(f"XDG_RUNTIME_DIR is not set, so WAYLAND_DISPLAY={display} cannot be found")
    return WaylandSocket(display, os.path.join(runtime_dir, display))


def probe(env: Mapping[str, str], timeout: float) -> WaylandFacts:
    """Facts about the user's Wayland compositor; it speaks only when asked, so just connect."""
    deadline = Deadline(timeout)
    where = resolve_socket(env)
    if isinstance(where, Missing):
        return WaylandFacts(False, where.reason)
    problem = check_unix(where.path, deadline)
    if problem is not None:
        reason = problem.reason
        if not env.get("WAYLAND_DISPLAY"):
            reason = f"WAYLAND_DISPLAY is not set and the default failed: {reason}"
        return WaylandFacts(False, reason, display=where.display, socket_path=where.path)
    return WaylandFacts(True, display=where.display, socket_path=where.path)
