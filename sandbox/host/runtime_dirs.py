"""Where this user's per-run state lives ($XDG_RUNTIME_DIR/sandbox or a fallback); no dirs made."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def runtime_root(uid: int, env: Mapping[str, str] | None = None) -> Path:
    """$XDG_RUNTIME_DIR/sandbox; else /run/sandbox-<uid> (root) or <tmp>/sandbox-<uid>."""
    environ = os.environ if env is None else env
    xdg = environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/") and os.path.isdir(xdg):
        return Path(xdg) / "sandbox"
    if os.geteuid() == 0 and os.path.isdir("/run"):
        return Path(f"/run/sandbox-{uid}")
    return Path(tempfile.gettempdir()) / f"sandbox-{uid}"
