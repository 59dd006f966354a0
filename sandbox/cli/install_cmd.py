"""`sandbox install FILE [--yes] [--edit] [--gui]`: review, then install; never without consent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.distribution.bundle_reader import Progress
    from sandbox.distribution.install import InstallPreview, InstallResult
    from sandbox.engine.adapter import DockerAdapter


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "install",
        help="review a .sbx bundle's permissions and install it (menu entry, icon)",
        description="Verify FILE without loading it, show what the app would get on this host "
        "grouped by risk, ask, then load the image and add a menu entry. Installing the same "
        "image again does nothing; another version is an update, which asks again only when "
        "it wants more, refuses while the installed version runs, and keeps that version for "
        "`sandbox rollback`. Exit 2 on a bad or hostile bundle, 1 when you decline.",
    )
    p.add_argument("file", metavar="FILE", type=Path)
    p.add_argument("--yes", "-y", action="store_true", help="agree without asking (scripts)")
    p.add_argument(
        "--edit", action="store_true", help="choose permissions to revoke before installing"
    )
    p.add_argument("--gui", action="store_true", help="ask in a window (the double-click path)")
    p.add_argument(
        "--wait",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="for another version: wait up to this long for running instances to end "
        "(default: refuse at once)",
    )
    p.add_argument("--docker-host", metavar="URL", help="engine to load the image into")
    p.add_argument("--site-policy", metavar="DIR", type=Path, help="site policy dir to use")
    p.add_argument("--overrides", metavar="DIR", type=Path, help="user override dir to use")
    p.set_defaults(handler=run)


def _edit(preview: InstallPreview, args: argparse.Namespace) -> tuple[InstallPreview, Any]:
    """Ask per permission; returns the replanned preview and the override to write on consent."""
    from sandbox.cli._install_flow import ask
    from sandbox.config.layers import load_override
    from sandbox.distribution.install import replan
    from sandbox.distribution.installed import consented
    from sandbox.policy.vocabulary import permission_sort_key

    app_id = preview.bundle.header.manifest.app.id
    override = load_override(app_id, args.overrides)
    for p in sorted(consented(preview.plan), key=permission_sort_key):
        status = preview.plan.status(p)
        title = status.title if status else str(p)
        if not ask(f"Allow {title} ({p})?", True):
            override = override.with_revoke(p)
    return replan(preview, override, site_policy=args.site_policy), override


def run(args: argparse.Namespace) -> int:
    from sandbox.cli import EXIT_USAGE
    from sandbox.distribution.installed import default_data_home
    from sandbox.engine.adapter import DockerAdapter

    if not args.file.is_file():
        print(f"sandbox: error: {args.file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    data_home = default_data_home()
    with DockerAdapter.from_env(args.docker_host) as adapter:
        if args.gui:
            from sandbox.cli.install_gui import run_gui

            code: int = run_gui(args, adapter, data_home)
            return code
        return _run_terminal(args, adapter, data_home)


def _run_terminal(args: argparse.Namespace, adapter: DockerAdapter, data_home: Path) -> int:
    from sandbox.cli._install_flow import InstallFlow, run_flow
    from sandbox.distribution.install import preview_install
    from sandbox.distribution.update import commit_update

    def verify(bar: Progress) -> InstallPreview:
        return preview_install(
            args.file,
            adapter,
            data_home,
            site_policy=args.site_policy,
            overrides=args.overrides,
            progress=bar,
        )

    def commit(preview: InstallPreview, bar: Progress) -> InstallResult:
        # Through the update path: another version must not switch under a running instance,
        # and the replaced one stays for `sandbox rollback`, as with `sandbox update`.
        return commit_update(preview, adapter, data_home, wait_s=args.wait, progress=bar)

    return run_flow(InstallFlow(verify, lambda p: _consent(p, args), commit, _report))


def _consent(preview: InstallPreview, args: argparse.Namespace) -> InstallPreview | None:
    """The review and the question when the bundle needs them; None when the user declines."""
    from sandbox.cli._install_flow import agreed, asks_for_more, publisher_line
    from sandbox.policy.review import review_text

    app = preview.bundle.header.manifest.app
    print(publisher_line(preview))
    if not preview.needs_consent:
        if preview.previous is not None:
            print(
                f"Updating {app.id} from {preview.previous.version} to {app.version} "
                "(it asks for nothing new)"
            )
        return preview
    print(review_text(preview.plan), end="")
    if preview.previous is not None:
        print(f"\nUpdate of {app.id} from {preview.previous.version} to {app.version}")
        print(f"This version asks for more: {asks_for_more(preview)}")
    override = None
    if args.edit:
        preview, override = _edit(preview, args)
        print(review_text(preview.plan), end="")
    question = f"Install {app.name} {app.version}?"
    if not agreed(args.yes, question, "cancelled; nothing was installed"):
        return None
    if override is not None:
        from sandbox.config.layers import write_override

        write_override(override, args.overrides)
    return preview


def _report(_preview: InstallPreview, result: InstallResult) -> None:
    app = result.app
    print(f"installed {app.app_id} {app.version} (image {app.image_id[:19]})")
    print(f"menu entry: {result.files.desktop}")
    if result.removed_image:
        print(f"removed the previous image {result.removed_image[:19]}")
    if app.previous is not None:
        print(f"kept {app.previous.version} for `sandbox rollback {app.app_id}`")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
