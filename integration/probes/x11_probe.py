"""Runs INSIDE a test container: tries what an X11 client could abuse and prints one JSON object.

Each key is an attempt; its value is "ok" or the X error class the server answered with.
argv[1] is a host window id (decimal) to aim at. Python 3 + python3-xlib only.
"""

import json
import sys

from Xlib import X, Xatom, display, error
from Xlib.protocol import event


def attempt(fn):
    try:
        fn()
        return "ok"
    except error.XError as exc:
        return type(exc).__name__


def checked(d, request):
    """For requests without a reply: catch the asynchronous error by syncing."""
    catcher = error.CatchError()
    request(catcher)
    d.sync()
    err = catcher.get_error()
    if err is not None:
        raise err


def main():
    host = int(sys.argv[1])
    d = display.Display()
    root = d.screen().root
    host_win = d.create_resource_object("window", host)
    own = root.create_window(0, 0, 50, 50, 0, d.screen().root_depth)
    own.set_wm_name("sandboxed probe")
    own.map()
    d.sync()
    out = {
        "extensions": sorted(d.list_extensions()),
        "xtest": d.query_extension("XTEST") is not None,
        "xres": d.query_extension("X-Resource") is not None,
        "security": d.query_extension("SECURITY") is not None,
        "record": d.query_extension("RECORD") is not None,
        "own_window": attempt(own.get_geometry),
        "getimage_root": attempt(lambda: root.get_image(0, 0, 8, 8, X.ZPixmap, 0xFFFFFFFF)),
        "getimage_host": attempt(lambda: host_win.get_image(0, 0, 8, 8, X.ZPixmap, 0xFFFFFFFF)),
        "grab_keyboard": None,
        "send_event_host": attempt(
            lambda: checked(
                d,
                lambda onerror: host_win.send_event(
                    event.KeyPress(
                        time=X.CurrentTime,
                        root=root,
                        window=host_win,
                        same_screen=1,
                        child=X.NONE,
                        root_x=0,
                        root_y=0,
                        event_x=0,
                        event_y=0,
                        state=0,
                        detail=38,
                    ),
                    propagate=False,
                    onerror=onerror,
                ),
            )
        ),
        "change_property_host": attempt(
            lambda: checked(
                d,
                lambda onerror: host_win.change_property(
                    Xatom.WM_NAME, Xatom.STRING, 8, b"pwned", onerror=onerror
                ),
            )
        ),
        "query_tree_root": attempt(root.query_tree),
    }
    try:
        reply = root.grab_keyboard(True, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
        out["grab_keyboard"] = "ok" if reply == X.GrabSuccess else f"status {reply}"
        d.ungrab_keyboard(X.CurrentTime)
    except error.XError as exc:
        out["grab_keyboard"] = type(exc).__name__
    print(json.dumps(out))


main()
