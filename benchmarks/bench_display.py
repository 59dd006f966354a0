"""Benchmark: per-launch cost of the X11 untrusted cookie and the Wayland dir, against plain
connections. Needs DISPLAY/XAUTHORITY (an X server with SECURITY) and WAYLAND_DISPLAY/
XDG_RUNTIME_DIR (a compositor); run as root to exercise the ACL path (app uid != owner)."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.host.x11_display import DisplayName, parse_display
from sandbox.policy.plan import WaylandSocketRequest, X11CookieRequest
from sandbox.providers.grant import ProviderContext
from sandbox.providers.wayland import WaylandProvider
from sandbox.providers.x11 import X11Provider, open_display


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    for _ in range(max(runs // 10, 3)):  # warm-up: imports, server-side caches
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--uid", type=int, default=1000, help="the app's uid")
    args = parser.parse_args()
    display = os.environ["DISPLAY"]
    xauth = Path(os.environ["XAUTHORITY"]) if os.environ.get("XAUTHORITY") else None
    work = Path(tempfile.mkdtemp(prefix="bench-display-"))
    name = parse_display(display)
    assert isinstance(name, DisplayName), name
    x_socket, x_auth = name.socket_path, str(xauth) if xauth else None

    def ctx(instance: str) -> ProviderContext:
        return ProviderContext("org.bench.App", work / instance, args.uid, args.uid, "bench", work)

    def plain_x() -> None:
        open_display(display, xauth).close()

    def untrusted_cycle() -> None:
        p = X11Provider(X11CookieRequest(False, display, x_socket, x_auth))
        p.setup(ctx("x"))
        p.teardown()

    def trusted_cycle() -> None:
        p = X11Provider(X11CookieRequest(True, display, x_socket, x_auth))
        p.setup(ctx("x"))
        p.teardown()

    rows = [
        ("plain X connection open + close", _median_ms(plain_x, args.runs)),
        ("display.x11: cookie + file + revoke + close", _median_ms(untrusted_cycle, args.runs)),
        ("display.x11-trusted: file write + remove", _median_ms(trusted_cycle, args.runs)),
    ]
    wl = os.environ.get("WAYLAND_DISPLAY")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if wl and runtime:
        sock_path = os.path.join(runtime, wl)

        def plain_wl() -> None:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock_path)

        def wl_cycle() -> None:
            p = WaylandProvider(WaylandSocketRequest(wl, sock_path))
            p.setup(ctx("w"))
            p.teardown()

        rows += [
            ("plain Wayland socket connect + close", _median_ms(plain_wl, args.runs)),
            ("display.wayland: dir + link + ACL + undo", _median_ms(wl_cycle, args.runs)),
        ]
    print(f"median of {args.runs} runs, uid {args.uid}")
    for name, ms in rows:
        print(f"{name:<46} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
