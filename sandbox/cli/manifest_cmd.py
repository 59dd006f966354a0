"""`sandbox manifest check|labels`: validate a manifest, emit labels; parsing stays in policy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sandbox.config.manifest import read_manifest
from sandbox.engine.adapter import DockerAdapter
from sandbox.errors import ManifestError
from sandbox.policy.manifest import (
    Manifest,
    dump_manifest,
    manifest_from_labels,
    manifest_to_labels,
)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "manifest", help="check a manifest or an image's manifest; print image labels"
    )
    msub = p.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")

    check = msub.add_parser(
        "check",
        help="validate a sandbox.toml FILE, or the labels of a local IMAGE",
        description="Validate FILE when that path exists, otherwise the labels of the local "
        "image IMAGE. Prints 'ok: <id> <version>' and exits 0, or the first problem with the "
        "field's path and exits 2.",
    )
    check.add_argument("target", metavar="FILE|IMAGE")
    check.add_argument(
        "--json", action="store_true", help="print the parsed manifest as JSON instead of 'ok'"
    )
    check.add_argument(
        "--docker-host", metavar="URL", help="engine to ask for IMAGE (default: DOCKER_HOST)"
    )
    check.set_defaults(handler=run_check)

    labels = msub.add_parser(
        "labels",
        help="print the image labels that carry the manifest in FILE",
        description="Print one key=value per line, for `docker build --label`; with "
        "--dockerfile, one quoted LABEL instruction for a Dockerfile.",
    )
    labels.add_argument("file", metavar="FILE", type=Path)
    labels.add_argument(
        "--dockerfile", action="store_true", help="print a Dockerfile LABEL instruction"
    )
    labels.set_defaults(handler=run_labels)


def load_target(target: str, docker_host: str | None) -> Manifest:
    """FILE when the path exists, else the labels of the local image TARGET."""
    path = Path(target)
    if path.exists():
        return read_manifest(path)
    if target.endswith(".toml"):
        # Almost surely a mistyped file name; "image x.toml not found" would mislead.
        raise ManifestError(target, "no such file")
    with DockerAdapter.from_env(docker_host) as adapter:
        labels = adapter.image_labels(target)
    try:
        return manifest_from_labels(labels)
    except ManifestError as exc:
        raise ManifestError(
            f"image {target}: {exc.field}" if exc.field else f"image {target}", exc.problem
        ) from None


def run_check(args: argparse.Namespace) -> int:
    manifest = load_target(args.target, args.docker_host)
    if args.json:
        print(json.dumps(dump_manifest(manifest), indent=2, sort_keys=True))
    else:
        print(f"ok: {manifest.app.id} {manifest.app.version}")
    return 0


def dockerfile_quote(value: str) -> str:
    """A double-quoted Dockerfile word: backslash, quote and `$` (substitution) escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def render_labels(labels: dict[str, str], dockerfile: bool) -> str:
    if not dockerfile:
        return "\n".join(f"{k}={v}" for k, v in labels.items())
    parts = [f"{k}={dockerfile_quote(v)}" for k, v in labels.items()]
    return "LABEL " + " \\\n      ".join(parts)


def run_labels(args: argparse.Namespace) -> int:
    labels = manifest_to_labels(read_manifest(args.file))
    sys.stdout.write(render_labels(labels, args.dockerfile) + "\n")
    return 0
