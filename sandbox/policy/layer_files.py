"""Strict TOML forms of site policy and user override files: decoded dicts in, layers out; pure.

Every problem is a PolicyError that starts with the file and names the key, raised through the
one schema reader; reading the files is sandbox.config's job.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from sandbox.errors import PolicyError
from sandbox.policy.layers import SitePolicy, UserOverride
from sandbox.policy.schema import FieldPath, Reader, Where, root
from sandbox.policy.vocabulary import Permission, Risk, parse_permission, permission_sort_key

LAYER_FORMAT_VERSION = 1

_SIZE_RE = re.compile(r"^\s*(\d{1,20}(?:\.\d{1,20})?)\s*([KMGT]?)(i?)(B?)\s*$", re.IGNORECASE)
_MAX_NUMBER = 2**63 - 1  # what the engine and the kernel take for any limit
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_RISKS: Mapping[str, Risk] = {r.label: r for r in Risk}


def _expected_table(value: object) -> str:
    return f"expected a table, got {type(value).__name__}"


def _reader(source: str) -> Reader:
    """Problems of the file `source`: "<source>: <key path>: <problem>"."""

    def fail(path: str, problem: str) -> PolicyError:
        return PolicyError(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")

    return Reader(fail=fail, not_table=_expected_table, sort_known=False)


def _plain_fail(path: str, problem: str) -> PolicyError:
    return PolicyError(f"{path}: {problem}")


_PLAIN = Reader(fail=_plain_fail, not_table=_expected_table, sort_known=False)


def parse_size(value: object, where: str) -> int:
    """Bytes from an integer or a string such as "512MiB", "2G", "4096"; units are binary."""
    return _size(_PLAIN, value, where)


def _size(read: Reader, value: object, where: Where) -> int:
    if isinstance(value, bool):
        raise read.error(where, "expected a size such as 2GiB, got a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
        size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
    else:
        raise read.error(where, f"expected a size such as 2GiB or an integer, got {value!r}")
    if size <= 0:
        raise read.error(where, f"must be greater than zero, got {value!r}")
    if size > _MAX_NUMBER:
        raise read.error(where, f"must be at most {_MAX_NUMBER} bytes, got {value!r}")
    return size


def _permissions(read: Reader, value: object, where: FieldPath) -> frozenset[Permission]:
    names = read.strings(value, where, "expected a list of capability names")
    out: set[Permission] = set()
    for i, text in enumerate(names):
        try:
            out.add(parse_permission(text))
        except PolicyError as exc:
            raise read.error(where.index(i), str(exc)) from None
    return frozenset(out)


def _version(read: Reader, doc: Mapping[str, Any]) -> None:
    version = doc.get("version", LAYER_FORMAT_VERSION)
    if version != LAYER_FORMAT_VERSION or isinstance(version, bool):
        raise read.error(root("version"), f"unsupported version {version!r} (this is 1)")


def _positive_number(read: Reader, value: object, where: Where, *, integer: bool) -> float:
    ok_types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        kind = "an integer" if integer else "a number"
        raise read.error(where, f"expected {kind}, got {value!r}")
    if isinstance(value, int) and value > _MAX_NUMBER:  # before isfinite: a huge int has no float
        raise read.error(where, f"must be at most {_MAX_NUMBER}, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise read.error(where, f"must be greater than zero, got {value!r}")
    return value


def _parse_risk(read: Reader, value: object, where: Where) -> Risk:
    return read.lookup(
        value, where, _RISKS, lambda v: f"expected one of {', '.join(_RISKS)}, got {v!r}"
    )


def _site_deny(read: Reader, doc: Mapping[str, Any]) -> tuple[frozenset[Permission], Risk | None]:
    if "deny" not in doc:
        return frozenset(), None
    where = root("deny")
    table = read.table(doc["deny"], where)
    read.keys(table, where, (), ("capabilities", "max-risk"))
    deny: frozenset[Permission] = frozenset()
    if "capabilities" in table:
        deny = _permissions(read, table["capabilities"], where.key("capabilities"))
    max_risk = None
    if "max-risk" in table:
        max_risk = _parse_risk(read, table["max-risk"], where.key("max-risk"))
    return deny, max_risk


def _site_limits(read: Reader, doc: Mapping[str, Any]) -> SitePolicy:
    """The limit caps alone (a SitePolicy with nothing else set)."""
    where = root("limits")
    limits = read.table(doc.get("limits", {}), where)
    read.keys(limits, where, (), ("max-memory", "max-cpus", "max-pids"))
    max_memory = max_cpus = max_pids = None
    if "max-memory" in limits:
        max_memory = _size(read, limits["max-memory"], where.key("max-memory"))
    if "max-cpus" in limits:
        cpus = limits["max-cpus"]
        max_cpus = float(_positive_number(read, cpus, where.key("max-cpus"), integer=False))
    if "max-pids" in limits:
        pids = limits["max-pids"]
        max_pids = int(_positive_number(read, pids, where.key("max-pids"), integer=True))
    return SitePolicy(max_memory_bytes=max_memory, max_cpus=max_cpus, max_pids=max_pids)


def _site_apps(read: Reader, doc: Mapping[str, Any]) -> dict[str, frozenset[Permission]]:
    per_app: dict[str, frozenset[Permission]] = {}
    for app_id, value in read.table(doc.get("apps", {}), root("apps")).items():
        where = root("apps", f'"{app_id}"')  # always quoted: app ids hold dots
        table = read.table(value, where)
        read.keys(table, where, (), ("deny",))
        per_app[app_id] = _permissions(read, table.get("deny", []), where.key("deny"))
    return per_app


def parse_site_policy(doc: Mapping[str, Any], source: str) -> SitePolicy:
    """One file of /etc/sandbox/policy.d/ (already TOML-decoded); errors name file and key."""
    read = _reader(source)
    read.keys(doc, root(), (), ("version", "deny", "limits", "apps", "install"))
    _version(read, doc)
    deny, max_risk = _site_deny(read, doc)
    limits = _site_limits(read, doc)
    return SitePolicy(
        deny=deny,
        deny_for_app=_site_apps(read, doc),
        max_risk=max_risk,
        max_memory_bytes=limits.max_memory_bytes,
        max_cpus=limits.max_cpus,
        max_pids=limits.max_pids,
        sources=(source,),
        require_signature=_site_install(read, doc),
    )


def _site_install(read: Reader, doc: Mapping[str, Any]) -> bool:
    """`[install] require-signature = true`: unsigned bundles are refused."""
    where = root("install")
    table = read.table(doc.get("install", {}), where)
    read.keys(table, where, (), ("require-signature",))
    value = table.get("require-signature", False)
    if not isinstance(value, bool):
        raise read.error(where.key("require-signature"), f"expected true or false, got {value!r}")
    return value


def parse_override(doc: Mapping[str, Any], source: str, app_id: str) -> UserOverride:
    """One ~/.config/sandbox/overrides/<app-id>.toml (already TOML-decoded)."""
    read = _reader(source)
    read.keys(doc, root(), (), ("version", "app-id", "grant", "revoke"))
    _version(read, doc)
    named = doc.get("app-id", app_id)
    if named != app_id:
        raise read.error("app-id", f"{named!r} does not match the file's app {app_id!r}")
    grant = _permissions(read, doc.get("grant", []), root("grant"))
    revoke = _permissions(read, doc.get("revoke", []), root("revoke"))
    try:
        return UserOverride(app_id, grant, revoke)
    except PolicyError as exc:
        raise read.error("", str(exc)) from None


def dump_override(override: UserOverride) -> str:
    """The TOML text of an override file; parse_override reads it back unchanged."""

    def names(ps: frozenset[Permission]) -> str:
        return ", ".join(f'"{p}"' for p in sorted(ps, key=permission_sort_key))

    return (
        "# Your decisions for this app; written by `sandbox override`.\n"
        f"version = {LAYER_FORMAT_VERSION}\n"
        f"app-id = {json.dumps(override.app_id)}\n"
        f"grant = [{names(override.grant)}]\n"
        f"revoke = [{names(override.revoke)}]\n"
    )
