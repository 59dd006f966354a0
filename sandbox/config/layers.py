"""Reads site policy files and user override files, writes overrides atomically; no policy rules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.config.catalog import policy_fail
from sandbox.errors import PolicyError
from sandbox.fileutil import write_atomic
from sandbox.host import names
from sandbox.host.documents import load_toml
from sandbox.policy.layer_files import dump_override, parse_override, parse_site_policy
from sandbox.policy.layers import SitePolicy, UserOverride

SITE_POLICY_DIR = Path("/etc/sandbox/policy.d")
ENV_SITE_POLICY_DIR = "SANDBOX_POLICY_DIR"  # tests and admins may point elsewhere
MAX_LAYER_BYTES = 256 * 1024


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_LAYER_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    doc: dict[str, Any] = load_toml(data, policy_fail(str(path)), max_bytes=MAX_LAYER_BYTES)
    return doc


def site_policy_dir(env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    return Path(environ.get(ENV_SITE_POLICY_DIR) or SITE_POLICY_DIR)


def load_site_policy(directory: Path | None = None) -> SitePolicy:
    """Every *.toml in the site policy dir, in name order, combined (stricter wins)."""
    directory = site_policy_dir() if directory is None else directory
    policy = SitePolicy()
    if not directory.is_dir():
        return policy  # no site policy is a valid, empty one
    for path in sorted(directory.glob("*.toml")):
        policy = policy.combine(parse_site_policy(_read_toml(path), str(path)))
    return policy


def overrides_dir(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_CONFIG_HOME/sandbox/overrides (default ~/.config/sandbox/overrides)."""
    environ = os.environ if env is None else env
    config = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(config).expanduser() / "sandbox" / "overrides"


def override_path(app_id: str, directory: Path | None = None) -> Path:
    directory = overrides_dir() if directory is None else directory
    # the id rules keep '/' and '..' out, so the name cannot leave the directory
    return directory / f"{names.check_app_id(app_id)}.toml"


def load_override(app_id: str, directory: Path | None = None) -> UserOverride:
    path = override_path(app_id, directory)
    if not path.exists():
        return UserOverride(app_id)
    return parse_override(_read_toml(path), str(path), app_id)


def write_override(override: UserOverride, directory: Path | None = None) -> Path:
    """Replace the app's override file atomically; an empty override removes the file."""
    path = override_path(override.app_id, directory)
    if override.is_empty:
        path.unlink(missing_ok=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, dump_override(override).encode("utf-8"), durable=True)
    return path
