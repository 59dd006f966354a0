"""`sandbox ps|stop|gc`: running instances and cleanup; touches no save data, no policy."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from sandbox.cli import EXIT_FAILURE


def register(sub: Any) -> None:
    ps = sub.add_parser("ps", help="list running sandboxed apps with their host pids")
    ps.add_argument("--json", action="store_true", help="print a JSON list")
    ps.set_defaults(handler=run_ps)
    stop = sub.add_parser("stop", help="stop every instance of APP, or one INSTANCE")
    stop.add_argument("target", metavar="APP|INSTANCE")
    stop.add_argument("--time", "-t", type=int, default=3, help="seconds before SIGKILL")
    stop.set_defaults(handler=run_stop)
    gc = sub.add_parser(
        "gc",
        help="remove what crashed launchers left behind (safe while apps run)",
        description="Removes containers, X11 cookies (revoked), Wayland dirs, instance dirs and "
        "empty app cgroups whose launcher is gone. Never touches running apps or save data.",
    )
    gc.add_argument("--docker-host", metavar="URL", action="append", help="also sweep this engine")
    gc.set_defaults(handler=run_gc)


def run_ps(args: argparse.Namespace) -> int:
    from sandbox.runtime import gc

    rows = gc.list_running()
    if args.json:
        out = [
            {
                "app_id": r.app_id,
                "instance_id": r.instance_id,
                "container_id": r.container_id,
                "started": datetime.datetime.fromtimestamp(r.started, datetime.UTC).isoformat(),
                "pids": list(r.pids),
                "launcher_pid": r.launcher_pid,
                "image": r.image,
            }
            for r in rows
        ]
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'INSTANCE':<13} {'APP':<32} {'STARTED':<20} PIDS")
    for r in rows:
        started = datetime.datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{r.instance_id:<13} {r.app_id:<32} {started:<20} {' '.join(map(str, r.pids))}")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    from sandbox.runtime import gc

    stopped = gc.stop(args.target, args.time)
    if not stopped:
        print(f"sandbox: no running instance matches {args.target}", file=sys.stderr)
        return EXIT_FAILURE
    for s in stopped:
        print(s)
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from sandbox.runtime import gc

    urls: tuple[str | None, ...] = (None, *(args.docker_host or ()))
    report = gc.gc(urls)
    for what, items in (
        ("containers", report.containers),
        ("instance dirs", report.instance_dirs),
        ("app cgroups", report.cgroups),
        ("app networks", report.networks),
    ):
        print(f"removed {len(items)} {what}" + (f": {', '.join(items)}" if items else ""))
    for p in report.problems:
        print(f"sandbox: warning: {p}", file=sys.stderr)
    return EXIT_FAILURE if report.problems else 0
