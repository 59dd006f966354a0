"""`sandbox update|rollback|rebase`: change an app's version or base; rules stay in distribution."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.distribution.bundle_reader import Progress
    from sandbox.distribution.install import InstallPreview, InstallResult


def register(sub: Any) -> None:
    up: argparse.ArgumentParser = sub.add_parser(
        "update",
        help="update an installed app from a full, thin or delta file (previous version kept)",
        description="Verify FILE as a new version of APP, ask again only when it wants more, "
        "load it (a thin or delta file takes its missing layers from local images) and switch. "
        "Refuses while an instance runs the installed version, unless it ends within --wait. "
        "The replaced version stays for `sandbox rollback APP`.",
    )
    up.add_argument("app", metavar="APP")
    up.add_argument("file", metavar="FILE", type=Path)
    up.add_argument("--yes", "-y", action="store_true", help="agree without asking (scripts)")
    _common(up)
    up.add_argument("--site-policy", metavar="DIR", type=Path, help="site policy dir to use")
    up.add_argument("--overrides", metavar="DIR", type=Path, help="user override dir to use")
    up.set_defaults(handler=run_update)

    rb: argparse.ArgumentParser = sub.add_parser(
        "rollback",
        help="switch an installed app back to the version it had before its last update/rebase",
    )
    rb.add_argument("app", metavar="APP")
    _common(rb)
    rb.set_defaults(handler=run_rollback)

    rs: argparse.ArgumentParser = sub.add_parser(
        "rebase",
        help="put an installed app's own layers on a patched base image (no registry)",
        description="Rewrite APP's image config so its unchanged layers sit on NEW-BASE, load "
        "it under a new tag, run its smoke check, and switch only when that passes (the "
        "previous image is kept for rollback). The old base: --from, else the one recorded at "
        "export/install or in the image's labels, else the local image whose layers are the "
        "longest proper prefix of the app's. See docs/updates.md.",
    )
    rs.add_argument("app", metavar="APP")
    rs.add_argument("--onto", metavar="NEW-BASE", required=True, help="the patched base image")
    rs.add_argument("--from", dest="from_ref", metavar="OLD-BASE", help="the base it sits on")
    rs.add_argument(
        "--force", action="store_true", help="allow a base of another lineage (same OS/arch)"
    )
    rs.add_argument(
        "--smoke-timeout",
        metavar="SECONDS",
        type=float,
        default=5.0,
        help="a smoke run still going after this long passes (default 5)",
    )
    _common(rs)
    rs.set_defaults(handler=run_rebase)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="wait up to this long for running instances to end (default: refuse at once)",
    )
    p.add_argument(
        "--reconstruct",
        action="store_true",
        help="rebuild full archives on the client (engines that refuse partial archives)",
    )
    p.add_argument("--docker-host", metavar="URL", help="engine to use")


def _mode(args: argparse.Namespace) -> Any:
    from sandbox.distribution.partial import PartialLoad

    return PartialLoad.RECONSTRUCT if args.reconstruct else PartialLoad.AUTO


def run_update(args: argparse.Namespace) -> int:
    from sandbox.cli import EXIT_USAGE
    from sandbox.cli._install_flow import InstallFlow, run_flow
    from sandbox.distribution.installed import default_data_home
    from sandbox.distribution.update import commit_update, preview_update
    from sandbox.engine.adapter import DockerAdapter
    from sandbox.host import names

    names.check_app_id(args.app)
    if not args.file.is_file():
        print(f"sandbox: error: {args.file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    data_home = default_data_home()
    with DockerAdapter.from_env(args.docker_host) as adapter:

        def verify(bar: Progress) -> InstallPreview:
            return preview_update(
                args.file,
                args.app,
                adapter,
                data_home,
                site_policy=args.site_policy,
                overrides=args.overrides,
                progress=bar,
            )

        def commit(preview: InstallPreview, bar: Progress) -> InstallResult:
            return commit_update(
                preview,
                adapter,
                data_home,
                wait_s=args.wait,
                progress=bar,
                partial_load=_mode(args),
            )

        return run_flow(InstallFlow(verify, lambda p: _consent(p, args.yes), commit, _report))


def _consent(preview: InstallPreview, yes: bool) -> InstallPreview | None:
    """Ask again only when this version wants more than the installed one."""
    from sandbox.cli._install_flow import agreed, asks_for_more, publisher_line
    from sandbox.policy.review import review_text

    print(publisher_line(preview))
    if not preview.new_permissions:
        return preview
    app = preview.bundle.header.manifest.app
    print(review_text(preview.plan), end="")
    print(f"\nThis version asks for more: {asks_for_more(preview)}")
    if not agreed(yes, f"Update {app.name} to {app.version}?", "cancelled; nothing was changed"):
        return None
    return preview


def _report(preview: InstallPreview, result: InstallResult) -> None:
    header = preview.bundle.header
    app = header.manifest.app
    old = preview.previous
    print(
        f"updated {app.id} {old.version if old else '?'} -> {app.version} "
        f"({header.kind.value} file, image {result.app.image_id[:19]})"
    )
    if result.app.previous is not None:
        print(f"kept {result.app.previous.version} for `sandbox rollback {app.id}`")
    if result.removed_image:
        print(f"removed the older image {result.removed_image[:19]}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


def run_rollback(args: argparse.Namespace) -> int:
    from sandbox.distribution.installed import default_data_home
    from sandbox.distribution.update import rollback
    from sandbox.engine.adapter import DockerAdapter
    from sandbox.host import names

    names.check_app_id(args.app)
    with DockerAdapter.from_env(args.docker_host) as adapter:
        result = rollback(args.app, adapter, default_data_home(), wait_s=args.wait)
    print(
        f"rolled {args.app} back from {result.replaced.version} ({result.replaced.image_id[:19]}) "
        f"to {result.app.version} ({result.app.image_id[:19]})"
    )
    return 0


def run_rebase(args: argparse.Namespace) -> int:
    from sandbox.distribution.installed import default_data_home
    from sandbox.distribution.rebase import rebase
    from sandbox.engine.adapter import DockerAdapter
    from sandbox.host import names

    names.check_app_id(args.app)
    with DockerAdapter.from_env(args.docker_host) as adapter:
        result = rebase(
            args.app,
            args.onto,
            adapter,
            default_data_home(),
            from_ref=args.from_ref,
            force=args.force,
            wait_s=args.wait,
            smoke_timeout_s=args.smoke_timeout,
            partial_load=_mode(args),
            engine_url=args.docker_host,
        )
    old, new = result.old_base, result.new_base
    print(f"old base: {old.name or old.image_id[:19]} (from the {result.old_base_from.value})")
    print(f"new base: {new.name or new.image_id[:19]} ({new.image_id[:19]})")
    print(
        f"loaded {result.tag} ({result.app.image_id[:19]}, {result.load.method.value}) "
        f"in {result.seconds_build_load:.2f} s"
    )
    print(f"smoke check passed: {result.smoke.detail}")
    print(f"{args.app} now runs {result.app.image_id[:19]}; `sandbox rollback {args.app}` undoes")
    return 0
