"""The JSON state file a provider leaves in an instance dir for gc: write and read; no policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sandbox.errors import ProviderError
from sandbox.fileutil import write_atomic

T = TypeVar("T")


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically, readable by its owner only."""
    write_atomic(path, json.dumps(state).encode("utf-8"))


def read_state(path: Path, what: str, parse: Callable[[Any], T]) -> T | None:
    """`parse` of the state file's JSON; None when there is none.

    ProviderError naming `what` when the file or the fields `parse` reads are malformed.
    """
    try:
        return parse(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ProviderError(f"{path}: malformed {what} state: {exc}") from exc
