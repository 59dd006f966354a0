"""`sandbox windows [--json]`: X11 windows and the app of each; reads the display, no changes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sandbox.attribution import WindowInfo, windows


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "windows", help="list X11 windows with the host pid and sandboxed app of each"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--display", default=None, help="X display (default: $DISPLAY)")
    p.set_defaults(handler=run)


def to_json(infos: tuple[WindowInfo, ...]) -> list[dict[str, Any]]:
    return [
        {
            "window_id": w.window_id,
            "title": w.title,
            "pid": w.pid,
            "app_id": w.app_id,
            "instance_id": w.instance_id,
        }
        for w in infos
    ]


def render_table(infos: tuple[WindowInfo, ...]) -> str:
    rows = [f"{'window':<10} {'pid':>7}  {'app':<30} title"]
    for w in infos:
        pid = "-" if w.pid is None else str(w.pid)
        app = w.app_id or "(host)"
        rows.append(f"{w.window_id:#010x} {pid:>7}  {app:<30} {w.title or ''}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    infos = windows(args.display)
    if args.json:
        print(json.dumps(to_json(infos), indent=2))
    else:
        print(render_table(infos))
    return 0
