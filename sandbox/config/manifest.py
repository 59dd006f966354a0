"""Reads a sandbox.toml file into a Manifest; the parsing rules live in sandbox.policy.manifest."""

from __future__ import annotations

from pathlib import Path

from sandbox.errors import ManifestError
from sandbox.policy.manifest import MAX_MANIFEST_BYTES, Manifest, parse_manifest_toml


def read_manifest(path: Path) -> Manifest:
    """The manifest in the file at `path`; unreadable, oversized or non-UTF-8 files fail."""
    try:
        with path.open("rb") as f:
            # Read one byte past the limit so a huge file is refused without reading all of it.
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(str(path), f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(str(path), f"not UTF-8 at byte {exc.start}") from None
    return parse_manifest_toml(text)
