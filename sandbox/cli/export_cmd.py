"""`sandbox export APP|IMAGE -o FILE`: write an app image as a .sbx bundle, with progress."""

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
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sandbox.cli._progress import ProgressBar
    from sandbox.distribution.bundle_writer import export_image
    from sandbox.distribution.installed import default_data_home, load_installed
    from sandbox.policy import names
    from sandbox.runtime.docker_adapter import DockerAdapter

    ref = args.target
    if names.is_valid_app_id(ref):
        installed = load_installed(ref, default_data_home())
        if installed is not None:
            ref = installed.tags[0] if installed.tags else installed.image_id
    bar = ProgressBar("exporting")
    with DockerAdapter.from_env(args.docker_host) as adapter:
        try:
            result = export_image(adapter, ref, args.output, bar)
        finally:
            bar.finish()
    app = result.header.manifest.app
    print(f"{result.path}: {app.id} {app.version}, {result.size} bytes")
    return 0
