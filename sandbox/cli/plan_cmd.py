"""`sandbox plan MANIFEST|IMAGE [--json]`: the permission review for this host; launches nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sandbox.cli.manifest_cmd import load_target
from sandbox.policy.review import plan_json, review_json, review_text
from sandbox.probes import probe_host
from sandbox.runtime.planning import plan_for


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "plan",
        help="show what an app would get on this host (the permission review)",
        description="Merge the app's manifest (a sandbox.toml FILE, or the labels of a local "
        "IMAGE) with the site policy and your overrides, probe this host, and print the "
        "permission review grouped by risk. Exit 2 on a bad manifest or policy file.",
    )
    p.add_argument("target", metavar="MANIFEST|IMAGE")
    p.add_argument("--json", action="store_true", help="print the review and the plan as JSON")
    p.add_argument("--docker-host", metavar="URL", help="engine to ask for IMAGE")
    p.add_argument("--site-policy", metavar="DIR", type=Path, help="site policy dir to use")
    p.add_argument("--overrides", metavar="DIR", type=Path, help="user override dir to use")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    manifest = load_target(args.target, args.docker_host)
    launch_plan = plan_for(
        manifest, probe_host(), site_policy=args.site_policy, overrides=args.overrides
    )
    if args.json:
        out = {"review": review_json(launch_plan), "plan": plan_json(launch_plan)}
        print(json.dumps(out, indent=2))
    else:
        print(review_text(launch_plan), end="")
    return 0
