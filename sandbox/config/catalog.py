"""Loads the capability catalog from the packaged policies (or a given dir); no parsing rules."""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from sandbox.errors import PolicyError
from sandbox.policy.catalog import Catalog, parse_catalog


def packaged_policies() -> Traversable:
    """The policies/ tree shipped inside the package (works from a wheel, not only a checkout)."""
    return resources.files("sandbox").joinpath("policies")


def read_toml_dir(directory: Traversable, label: str) -> dict[str, dict[str, Any]]:
    """{file name: parsed TOML} for every *.toml in `directory`; syntax errors name the file."""
    docs: dict[str, dict[str, Any]] = {}
    try:
        entries = sorted(directory.iterdir(), key=lambda e: e.name)
    except OSError as exc:
        raise PolicyError(f"{label}: cannot list: {exc.strerror or exc}") from None
    for entry in entries:
        if not entry.name.endswith(".toml"):
            continue
        try:
            docs[entry.name] = tomllib.loads(entry.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PolicyError(f"{label}/{entry.name}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise PolicyError(f"{label}/{entry.name}: not UTF-8 at byte {exc.start}") from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{label}/{entry.name}: TOML syntax error: {exc}") from None
    return docs


@functools.lru_cache(maxsize=8)
def load_catalog(path: Path | None = None) -> Catalog:
    """The capability catalog from `path` (a dir of capability files) or the packaged one."""
    directory: Traversable = (
        path if path is not None else packaged_policies().joinpath("capabilities")
    )
    return parse_catalog(read_toml_dir(directory, str(path) if path else "capabilities"))
