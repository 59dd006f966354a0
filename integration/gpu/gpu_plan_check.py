"""One-shot check on a real GPU host: probe table, then plan and review for gpu+webcam+gamepad."""

import sys

sys.path.insert(0, ".")  # run from the repository root on a host where sandbox is not installed

from sandbox.cli.probe_cmd import render_table
from sandbox.config.catalog import load_catalog
from sandbox.policy import engine
from sandbox.policy.layers import BUILTIN_DEFAULTS, SitePolicy, merge
from sandbox.policy.manifest import AppInfo, Capabilities, Manifest
from sandbox.policy.review import review_text
from sandbox.probes import probe_host


def main() -> int:
    facts = probe_host()
    sys.stdout.write(render_table(facts) + "\n")
    manifest = Manifest(
        app=AppInfo(id="org.sandboxtest.Gpu", name="Gpu", version="1", command=("/bin/true",)),
        capabilities=Capabilities(gpu=True, webcam=True, gamepad=True),
    )
    catalog = load_catalog()
    policy = merge(BUILTIN_DEFAULTS, manifest, SitePolicy(), None, catalog=catalog)
    plan = engine.plan(policy, facts, catalog=catalog)
    sys.stdout.write(f"devices: {[(d.path, d.major, d.minor) for d in plan.devices]}\n")
    sys.stdout.write(f"requests: {plan.requests}\ngroups: {plan.groups}\n")
    sys.stdout.write(review_text(plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
