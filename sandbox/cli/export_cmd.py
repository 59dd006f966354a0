"""`sandbox export APP|IMAGE -o FILE`: write a bundle; the format rules stay in distribution."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="write an installed app or a local image as a .sbx bundle file",
        description="Write APP (an installed app id) or IMAGE (a local image with a sandbox "
        "manifest) to FILE: a tar with sandbox-bundle.json first, then the image as "
        "`docker save` writes it. See docs/bundle.md.",
    )
    p.add_argument("target", metavar="APP|IMAGE")
    p.add_argument("-o", "--output", metavar="FILE", type=Path, required=True)
    p.add_argument("--docker-host", metavar="URL", help="engine to read the image from")
    p.add_argument("--thin", action="store_true", help="leave out the base's layers (needs --base)")
    p.add_argument("--base", metavar="IMAGE", help="the local base image of a --thin bundle")
    p.add_argument(
        "--delta-from",
        metavar="OLD-IMAGE",
        help="write only the layers the older version OLD-IMAGE lacks (a delta update)",
    )
    p.add_argument(
        "--sign",
        metavar="KEYFILE",
        type=Path,
        help="sign the bundle with this publisher key (`sandbox keygen`); see docs/bundle.md",
    )
    p.add_argument(
        "--rotate-from",
        metavar="OLD-KEYFILE",
        type=Path,
        action="append",
        default=[],
        help="carry a rotation from this older key to the --sign key (repeat, oldest first), "
        "so hosts that pinned the old key accept the file and pin the new one",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from sandbox.cli import EXIT_USAGE
    from sandbox.cli._progress import ProgressBar
    from sandbox.distribution.bundle_format import BundleKind
    from sandbox.distribution.bundle_writer import export_image, export_partial
    from sandbox.distribution.installed import default_data_home, load_installed
    from sandbox.distribution.signing import SigningKeys
    from sandbox.engine.adapter import DockerAdapter
    from sandbox.host import names

    if args.thin != (args.base is not None):
        print("sandbox: error: --thin and --base IMAGE go together", file=sys.stderr)
        return EXIT_USAGE
    if args.thin and args.delta_from:
        print("sandbox: error: --thin and --delta-from exclude each other", file=sys.stderr)
        return EXIT_USAGE
    if args.rotate_from and args.sign is None:
        print("sandbox: error: --rotate-from needs --sign KEYFILE", file=sys.stderr)
        return EXIT_USAGE
    # Keys first: a bad key file fails before the engine is asked for anything.
    signer = SigningKeys.load(args.sign, args.rotate_from) if args.sign is not None else None
    ref = args.target
    if names.is_valid_app_id(ref):
        installed = load_installed(ref, default_data_home())
        if installed is not None:
            ref = installed.tags[0] if installed.tags else installed.image_id
    bar = ProgressBar("exporting")
    with DockerAdapter.from_env(args.docker_host) as adapter:
        try:
            if args.thin:
                result = export_partial(
                    adapter,
                    ref,
                    args.output,
                    kind=BundleKind.THIN,
                    base_ref=args.base,
                    progress=bar,
                    signer=signer,
                )
            elif args.delta_from:
                result = export_partial(
                    adapter,
                    ref,
                    args.output,
                    kind=BundleKind.DELTA,
                    base_ref=args.delta_from,
                    progress=bar,
                    signer=signer,
                )
            else:
                result = export_image(adapter, ref, args.output, bar, signer=signer)
        finally:
            bar.finish()
    app = result.header.manifest.app
    header = result.header
    print(f"{result.path}: {app.id} {app.version}, {result.size} bytes ({header.kind.value})")
    print(f"signed by {signer.fingerprint}" if signer is not None else "unsigned")
    if header.base is not None:
        print(
            f"carries {len(header.carried)} of {len(header.layers)} layers; needs "
            f"{header.base.name or header.base.image_id[:19]} on the installing host"
        )
    return 0
