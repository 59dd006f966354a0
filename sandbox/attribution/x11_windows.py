"""Which app each X11 window belongs to, via X-Resource client pids and procfs; reads only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from Xlib import X, Xatom
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import res

from sandbox.attribution.procfs import app_for_pid
from sandbox.attribution.window_info import WindowInfo
from sandbox.errors import UnavailableError

# How deep to look under a top-level window for the client window a WM frame wraps; reparenting
# WMs put it one or two levels down.
_FRAME_DEPTH = 3


def _safe(call: Any, *args: Any) -> Any:
    """A reply from a window that may vanish while we walk the tree; None when it did."""
    try:
        return call(*args)
    except (xerror.BadWindow, xerror.BadDrawable, xerror.BadMatch, xerror.BadValue):
        return None


def _title(conn: Any, win: Any) -> str | None:
    utf8 = conn.intern_atom("UTF8_STRING")
    prop = _safe(win.get_full_property, conn.intern_atom("_NET_WM_NAME"), utf8)
    if prop is not None and prop.value:
        value = prop.value
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    prop = _safe(win.get_full_property, Xatom.WM_NAME, X.AnyPropertyType)
    if prop is not None and prop.value:
        value = prop.value
        if not isinstance(value, bytes):
            return str(value)
        # WM_NAME is Latin-1 by ICCCM, but many clients put UTF-8 there; UTF-8 rarely
        # decodes by accident, so try it first.
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return None


def _client_of(conn: Any, win: Any, wm_state: int, depth: int) -> Any | None:
    """The window carrying WM_STATE at or below `win` (the app's window inside a WM frame)."""
    if _safe(win.get_full_property, wm_state, X.AnyPropertyType) is not None:
        return win
    if depth == 0:
        return None
    tree = _safe(win.query_tree)
    if tree is None:
        return None
    for child in tree.children:
        found = _client_of(conn, child, wm_state, depth - 1)
        if found is not None:
            return found
    return None


def _client_windows(conn: Any) -> list[Any]:
    wm_state = conn.intern_atom("WM_STATE")
    root = conn.screen().root
    tree = _safe(root.query_tree)
    out = []
    for top in tree.children if tree is not None else ():
        attrs = _safe(top.get_attributes)
        if attrs is None or attrs.map_state != X.IsViewable or attrs.override_redirect:
            continue  # unmapped helper windows and menus/tooltips are not "windows" to a user
        # Without a window manager nothing has WM_STATE: the top-level is the client.
        out.append(_client_of(conn, top, wm_state, _FRAME_DEPTH) or top)
    return out


def _pids(conn: Any, windows: Iterable[Any]) -> dict[int, int]:
    """Window id -> host pid of its creating client, in one X-Resource round trip."""
    ids = [w.id for w in windows]
    if not ids or not conn.has_extension("X-Resource"):
        return {}
    try:
        reply = conn.res_query_client_ids(
            [{"client": wid, "mask": res.LocalClientPIDMask} for wid in ids]
        )
    except xerror.XError:
        return {}
    client_pid: dict[int, int] = {}
    for item in reply.ids:
        if item.spec.mask & res.LocalClientPIDMask and item.value:
            client_pid[item.spec.client] = int(item.value[0])
    # The server answers with the client's resource base, not the window id: map back by the
    # client bits (the high bits above the server's resource mask).
    mask = conn.display.info.resource_id_mask
    out: dict[int, int] = {}
    for wid in ids:
        for base, pid in client_pid.items():
            if base & ~mask == wid & ~mask:
                out[wid] = pid
    return out


def list_windows(display: str | None = None) -> tuple[WindowInfo, ...]:
    """The viewable top-level windows of `display` (default $DISPLAY), with their app.

    Needs a trusted connection (the user's own cookie): X-Resource is hidden from untrusted ones.
    """
    try:
        conn = xdisplay.Display(display)
    except (xerror.DisplayError, xerror.ConnectionClosedError, OSError) as exc:
        raise UnavailableError(
            f"windows: cannot connect to X display {display or '$DISPLAY'}: {exc}"
        ) from exc
    try:
        clients = _client_windows(conn)
        pids = _pids(conn, clients)
        result = []
        for win in clients:
            pid = pids.get(win.id)
            identity = app_for_pid(pid) if pid is not None else None
            result.append(
                WindowInfo(
                    window_id=win.id,
                    title=_title(conn, win),
                    pid=pid,
                    app_id=identity.app_id if identity else None,
                    instance_id=identity.instance_id if identity else None,
                )
            )
        return tuple(result)
    finally:
        conn.close()
