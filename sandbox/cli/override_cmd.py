"""`sandbox override APP --grant|--revoke|--reset`: edit the user layer; never site policy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sandbox.config.layers import load_override, write_override
from sandbox.host import names
from sandbox.policy.vocabulary import parse_permission


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "override",
        help="grant, revoke or reset a capability for one app (your layer)",
        description="Your decisions beat the manifest, never the site policy. --grant of a "
        "capability the app does not ask for is an explicit extra grant; --reset forgets your "
        "decision on CAP, or on everything without CAP.",
    )
    p.add_argument("app", metavar="APP", help="the app id, e.g. com.example.Game")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--grant", metavar="CAP")
    action.add_argument("--revoke", metavar="CAP")
    action.add_argument("--reset", metavar="CAP", nargs="?", const="", default=None)
    p.add_argument("--overrides", metavar="DIR", type=Path, help="override dir to use")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    app_id = names.check_app_id(args.app)
    current = load_override(app_id, args.overrides)
    if args.grant is not None:
        updated = current.with_grant(parse_permission(args.grant))
        said = f"granted {args.grant}"
    elif args.revoke is not None:
        updated = current.with_revoke(parse_permission(args.revoke))
        said = f"revoked {args.revoke}"
    elif args.reset:
        updated = current.with_reset(parse_permission(args.reset))
        said = f"reset {args.reset}"
    else:
        updated = current.with_reset()
        said = "reset everything"
    path = write_override(updated, args.overrides)
    print(f"{app_id}: {said} ({path})")
    return 0
