"""`sandbox attribute PID [--json]`: the app a host process belongs to; /proc only, no engine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sandbox.attribution import app_for_pid
from sandbox.cli import EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "attribute", help="show which sandboxed app a host process belongs to"
    )
    p.add_argument("pid", metavar="PID", help="a host process id")
    p.add_argument("--json", action="store_true", help="print one JSON object, or null for no app")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    text: str = args.pid
    if not text.isascii() or not text.isdigit() or int(text) <= 0:
        print(f"sandbox: error: PID: {text!r} is not a positive integer", file=sys.stderr)
        return EXIT_USAGE
    pid = int(text)
    identity = app_for_pid(pid)
    if args.json:
        print(
            json.dumps(
                None
                if identity is None
                else {
                    "app_id": identity.app_id,
                    "instance_id": identity.instance_id,
                    "container_id": identity.container_id,
                }
            )
        )
    elif identity is None:
        print(f"pid {pid}: no sandboxed app (a host process, or gone)")
    else:
        print(f"pid {pid}: app {identity.app_id}, instance {identity.instance_id}")
    return EXIT_OK  # "no app" is an answer, not a failure
