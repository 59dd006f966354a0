"""Loads the capability catalog from the packaged policies (or a given dir); no parsing rules."""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from sandbox.errors import PolicyError
from sandbox.host.documents import Fail, load_toml
from sandbox.policy.catalog import Catalog, parse_catalog


def packaged_policies() -> Traversable:
    """The policies/ tree shipped inside the package (works from a wheel, not only a checkout)."""
    return resources.files("sandbox").joinpath("policies")


MAX_POLICY_BYTES = 1024 * 1024


def policy_fail(where: str) -> Fail:
    """The error factory for decoding the policy file `where`: the file first, then the problem,
    then the place in it."""

    def fail(at: str, problem: str) -> PolicyError:
        return PolicyError(f"{where}: {problem} (at {at})" if at else f"{where}: {problem}")

    return fail


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
        where = f"{label}/{entry.name}"
        try:
            data = entry.read_bytes()
        except OSError as exc:
            raise PolicyError(f"{where}: cannot read: {exc.strerror or exc}") from None
        docs[entry.name] = load_toml(data, policy_fail(where), max_bytes=MAX_POLICY_BYTES)
    return docs


@functools.lru_cache(maxsize=8)
def load_catalog(path: Path | None = None) -> Catalog:
    """The capability catalog from `path` (a dir of capability files) or the packaged one."""
    directory: Traversable = (
        path if path is not None else packaged_policies().joinpath("capabilities")
    )
    return parse_catalog(read_toml_dir(directory, str(path) if path else "capabilities"))
