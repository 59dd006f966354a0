"""`sandbox list|info|uninstall`: installed apps, grants, removal; rules stay in distribution."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.distribution.installed import InstalledApp


def register(sub: Any) -> None:
    ls: argparse.ArgumentParser = sub.add_parser("list", help="list installed apps")
    ls.add_argument("--json", action="store_true", help="print the records as JSON")
    ls.add_argument(
        "--disk",
        action="store_true",
        help="bytes per app, and bytes shared with other images through common base layers",
    )
    ls.add_argument("--docker-host", metavar="URL", help="engine holding the images (--disk)")
    ls.set_defaults(handler=run_list)

    info: argparse.ArgumentParser = sub.add_parser(
        "info",
        help="an installed app: manifest, granted permissions, your overrides, data size",
    )
    info.add_argument("app", metavar="APP", help="the app id, e.g. com.example.Game")
    info.add_argument("--json", action="store_true", help="print it as JSON")
    info.set_defaults(handler=run_info)

    rm: argparse.ArgumentParser = sub.add_parser(
        "uninstall",
        help="remove an installed app (menu entry, icon, image); saves stay unless --purge",
        description="Remove APP's menu entry, icons and record, and its image when no other "
        "installed app uses it. Its saved data under $XDG_DATA_HOME/sandbox/apps/APP stays "
        "unless --purge.",
    )
    rm.add_argument("app", metavar="APP")
    rm.add_argument("--purge", action="store_true", help="also delete the app's saved data")
    rm.add_argument("--docker-host", metavar="URL", help="engine holding the image")
    rm.set_defaults(handler=run_uninstall)


def _row(app: InstalledApp) -> dict[str, Any]:
    from sandbox.distribution.installed import dump_record

    return dump_record(app)


def run_list(args: argparse.Namespace) -> int:
    from sandbox.distribution.installed import default_data_home, list_installed

    apps = list_installed(default_data_home())
    if args.disk:
        return _disk(apps, args)
    if args.json:
        print(json.dumps([_row(a) for a in apps], indent=2, sort_keys=True))
        return 0
    if not apps:
        print("no apps installed")
        return 0
    width = max(len(a.app_id) for a in apps)
    for a in apps:
        print(f"{a.app_id:<{width}}  {a.version:<10} {a.manifest.app.name}")
    return 0


def _disk(apps: tuple[InstalledApp, ...], args: argparse.Namespace) -> int:
    from sandbox.engine.adapter import DockerAdapter

    with DockerAdapter.from_env(args.docker_host) as adapter:
        usage = {u.id: u for u in adapter.images.disk_usage()}
    rows: list[dict[str, Any]] = []
    for a in apps:
        u = usage.get(a.image_id)
        kept = usage.get(a.previous.image_id) if a.previous is not None else None
        rows.append(
            {
                "app-id": a.app_id,
                "version": a.version,
                "image-id": a.image_id,
                "bytes": u.size if u else None,
                "shared-bytes": u.shared_size if u else None,
                "own-bytes": (u.size - u.shared_size) if u else None,
                "previous-own-bytes": (kept.size - kept.shared_size) if kept else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print("no apps installed")
        return 0
    width = max(len(r["app-id"]) for r in rows)
    print(f"{'APP':<{width}}  {'BYTES':>12} {'SHARED':>12} {'OWN':>12}  PREVIOUS(OWN)")
    for r in rows:

        def n(v: Any) -> str:
            return "-" if v is None else str(v)

        print(
            f"{r['app-id']:<{width}}  {n(r['bytes']):>12} {n(r['shared-bytes']):>12} "
            f"{n(r['own-bytes']):>12}  {n(r['previous-own-bytes'])}"
        )
    own = sum(r["own-bytes"] or 0 for r in rows)
    whole = sum(r["bytes"] or 0 for r in rows)
    print(
        f"{len(rows)} app(s): {whole} bytes if each carried its layers; {own} bytes their own; "
        "the rest lives in layers shared with other images (bases)"
    )
    return 0


def _installed(app_id: str) -> InstalledApp:
    from sandbox.distribution.installed import default_data_home, load_installed
    from sandbox.errors import BundleError
    from sandbox.host import names

    names.check_app_id(app_id)
    app = load_installed(app_id, default_data_home())
    if app is None:
        raise BundleError(app_id, "is not installed (see `sandbox list`)")
    return app


def run_info(args: argparse.Namespace) -> int:
    from sandbox.config.layers import load_override
    from sandbox.distribution.installed import default_data_home
    from sandbox.policy.manifest import dump_manifest
    from sandbox.providers import storage

    app = _installed(args.app)
    override = load_override(app.app_id)
    dirs = storage.list_storage(default_data_home(), app.app_id)
    if args.json:
        out = _row(app)
        out["overrides"] = {
            "grant": sorted(str(p) for p in override.grant),
            "revoke": sorted(str(p) for p in override.revoke),
        }
        out["data"] = [{"name": d.name, "path": str(d.path), "bytes": d.size_bytes} for d in dirs]
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    m = app.manifest
    print(f"{m.app.name} {app.version} ({app.app_id})")
    if m.app.description:
        print(f"  {m.app.description}")
    print(f"image:      {app.image_id}  {' '.join(app.tags)}")
    print(f"installed:  {app.installed_at}  (bundle sha256 {app.bundle_sha256[:16]}...)")
    print(f"granted:    {', '.join(sorted(str(p) for p in app.granted)) or 'nothing'}")
    print(f"your grant: {', '.join(sorted(str(p) for p in override.grant)) or '-'}")
    print(f"you revoke: {', '.join(sorted(str(p) for p in override.revoke)) or '-'}")
    total = sum(d.size_bytes for d in dirs)
    print(f"data:       {total} bytes in {len(dirs)} dir(s)")
    for d in dirs:
        print(f"  {d.name}: {d.size_bytes} bytes  {d.path}")
    print("manifest:")
    print(json.dumps(dump_manifest(m), indent=2, sort_keys=True))
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    from sandbox.distribution.install import uninstall
    from sandbox.distribution.installed import default_data_home
    from sandbox.engine.adapter import DockerAdapter

    app = _installed(args.app)
    with DockerAdapter.from_env(args.docker_host) as adapter:
        result = uninstall(app.app_id, adapter, default_data_home(), purge=args.purge)
    print(f"uninstalled {app.app_id} {app.version}")
    if result.removed_image:
        print(f"removed image {result.removed_image[:19]}")
    for path in result.purged:
        print(f"deleted data {path}")
    for path in result.kept_data:
        print(f"kept data {path} (use --purge to delete)")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0
