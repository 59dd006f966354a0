"""`sandbox data APP [--json] [--purge]`: an app's storage dirs and sizes; purges only if asked."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sandbox.cli import EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="list (or --purge) an app's saved data")
    p.add_argument("app_id", metavar="APP")
    p.add_argument("--json", action="store_true")
    p.add_argument("--purge", action="store_true", help="delete all of the app's saved data")
    p.add_argument("--yes", "-y", action="store_true", help="purge without asking")
    p.set_defaults(handler=run)


def _data_home() -> Path:
    from sandbox.probes import user

    return Path(user.data_home(os.environ))


def run(args: argparse.Namespace) -> int:
    from sandbox.host.names import check_app_id
    from sandbox.providers import storage

    check_app_id(args.app_id)
    home = _data_home()
    dirs = storage.list_storage(home, args.app_id)
    if args.purge:
        if not dirs:
            print(f"{args.app_id} has no saved data")
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    "sandbox: error: refusing to purge without --yes (stdin is not a terminal)",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            sys.stderr.write(f"Delete all saved data of {args.app_id} ({len(dirs)} dirs)? [y/N] ")
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                return 1
        for d in storage.purge_storage(home, args.app_id):
            print(f"removed {d.path}")
        return 0
    if args.json:
        rows = [{"name": d.name, "path": str(d.path), "size_bytes": d.size_bytes} for d in dirs]
        print(json.dumps(rows, indent=2))
        return 0
    for d in dirs:
        print(f"storage.{d.name:<20} {d.size_bytes:>12}  {d.path}")
    return 0
