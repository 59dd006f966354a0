"""WindowInfo: one X11 window and the app it belongs to; plain data, no X connection."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WindowInfo:
    """A top-level (client) window; pid is the HOST pid of the client that created it."""

    window_id: int
    title: str | None
    pid: int | None  # None when X-Resource is missing or the client's pid is unknown (TCP)
    app_id: str | None  # None for host windows (and when pid is None)
    instance_id: str | None
