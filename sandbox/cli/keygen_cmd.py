"""`sandbox keygen -o KEYFILE`: a new publisher key; the key rules stay in distribution.signing."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "write a new Ed25519 publisher key for signing bundles (`export --sign`)"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "keygen",
        help=HELP,
        description="Write a new Ed25519 private key to KEYFILE (PEM, mode 0600; an existing "
        "file is never overwritten) and print its public fingerprint, ed25519:<hex sha256 of the "
        "raw public key>. Installs pin an app to the key its first signed file carries; keep "
        "the file safe, and hand an app to a new key with `export --sign NEW --rotate-from OLD`. "
        "See docs/security.md, Publishers.",
    )
    p.add_argument("-o", "--output", metavar="KEYFILE", type=Path, required=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sandbox.distribution.signing import generate_key

    print(f"{args.output}: {generate_key(args.output)}")
    return 0
