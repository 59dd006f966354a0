"""The capability catalog (policies/capabilities/*.toml) parsed into typed definitions. Pure."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sandbox.errors import PolicyError
from sandbox.policy.schema import Reader, root
from sandbox.policy.vocabulary import Capability, Permission, Risk, Storage


class StorageTemplate(enum.StrEnum):
    """The one definition shared by every `storage.<name>` permission."""

    STORAGE = "storage"


CatalogKey = Capability | StorageTemplate

NAME_PLACEHOLDER: Final = "{name}"  # storage only: replaced by the storage name
MAX_TITLE = 48
MAX_SUMMARY = 200
MAX_GRANTS = 500
_REQUIRED: Final = ("title", "summary", "risk", "grants")
_OPTIONAL: Final = ("implies",)
_RISKS: Final = {r.label: r for r in Risk}


@dataclass(frozen=True)
class CapabilityDef:
    """What the review screen says about one permission, and what it implies."""

    key: CatalogKey
    title: str
    summary: str
    risk: Risk
    implies: tuple[Capability, ...]  # granting `key` gives these too (direct ones only)
    grants: str  # plain words: what it gives on the host

    def for_permission(self, p: Permission) -> CapabilityDef:
        """This definition with `{name}` filled in for a storage permission."""
        if not isinstance(p, Storage):
            return self
        return CapabilityDef(
            key=self.key,
            title=self.title.replace(NAME_PLACEHOLDER, p.name),
            summary=self.summary.replace(NAME_PLACEHOLDER, p.name),
            risk=self.risk,
            implies=self.implies,
            grants=self.grants.replace(NAME_PLACEHOLDER, p.name),
        )


def catalog_key(p: Permission) -> CatalogKey:
    return StorageTemplate.STORAGE if isinstance(p, Storage) else p


@dataclass(frozen=True)
class Catalog:
    """Every capability's definition, exactly once; built only through parse_catalog."""

    defs: tuple[CapabilityDef, ...]

    def _by_key(self) -> dict[CatalogKey, CapabilityDef]:
        return {d.key: d for d in self.defs}

    def get(self, p: Permission) -> CapabilityDef:
        """The definition of `p`, with a storage name filled in."""
        found = self._by_key().get(catalog_key(p))
        if found is None:  # parse_catalog guarantees completeness; a hand-built Catalog may not
            raise PolicyError(f"capability catalog has no definition for {p}")
        return found.for_permission(p)

    def risk(self, p: Permission) -> Risk:
        return self.get(p).risk

    def implied(self, p: Permission) -> frozenset[Capability]:
        """Everything granting `p` also gives, transitively, without `p` itself."""
        by_key = self._by_key()
        seen: set[Capability] = set()
        todo = list(by_key[catalog_key(p)].implies)
        while todo:
            c = todo.pop()
            if c not in seen:
                seen.add(c)
                todo.extend(by_key[c].implies)
        return frozenset(seen)

    def all(self) -> tuple[CapabilityDef, ...]:
        return self.defs

    def __iter__(self) -> Iterator[CapabilityDef]:
        return iter(self.defs)


def _known_files() -> str:
    return ", ".join(f"{k}.toml" for k in [*map(str, Capability), StorageTemplate.STORAGE.value])


def _reader(where: str) -> Reader:
    """Problems of one capability file: "capabilities/<file>: <key>: <problem>"."""

    def fail(path: str, problem: str) -> PolicyError:
        return PolicyError(f"{where}: {path}: {problem}" if path else f"{where}: {problem}")

    return Reader(fail=fail, not_table=lambda _value: "must be a table")


def _text(read: Reader, doc: Mapping[str, Any], key: str, max_len: int, storage: bool) -> str:
    value = read.string(doc[key], key, "must be a string")
    if not value.strip() or value != value.strip():
        raise read.error(key, "must be non-empty without surrounding whitespace")
    read.length(value, key, max_len)
    if any(ord(c) < 0x20 for c in value):
        raise read.error(key, "must be one line")
    rest = value.replace(NAME_PLACEHOLDER, "") if storage else value
    if "{" in rest or "}" in rest:
        allowed = f"only {NAME_PLACEHOLDER} is allowed" if storage else "no placeholders here"
        raise read.error(key, f"unexpected brace ({allowed})")
    return value


def _risk(read: Reader, raw: object) -> Risk:
    known = ", ".join(r.label for r in Risk)
    return read.lookup(raw, "risk", _RISKS, lambda v: f"must be one of {known}, not {v!r}")


def _implies(read: Reader, key: CatalogKey, raw: object) -> tuple[Capability, ...]:
    if not isinstance(raw, list):
        raise read.error("implies", "must be an array of capability names")
    known = ", ".join(map(str, Capability))
    implies: list[Capability] = []
    for i, item in enumerate(raw):
        where = root("implies").index(i)
        cap = read.choice(
            item, where, Capability, lambda v: f"unknown capability {v!r} (known: {known})"
        )
        if cap == key:
            raise read.error(where, "a capability cannot imply itself")
        if cap in implies:
            raise read.error(where, f"duplicate {item!r}")
        implies.append(cap)
    return tuple(implies)


def _parse_one(where: str, key: CatalogKey, doc: Mapping[str, Any]) -> CapabilityDef:
    read = _reader(where)
    read.table(doc, "")
    read.keys(doc, root(), _REQUIRED, _OPTIONAL)
    storage = key is StorageTemplate.STORAGE
    risk = _risk(read, doc["risk"])
    implies = _implies(read, key, doc.get("implies", []))
    return CapabilityDef(
        key=key,
        title=_text(read, doc, "title", MAX_TITLE, storage),
        summary=_text(read, doc, "summary", MAX_SUMMARY, storage),
        risk=risk,
        implies=implies,
        grants=_text(read, doc, "grants", MAX_GRANTS, storage),
    )


def _check_cycles(defs: dict[CatalogKey, CapabilityDef], where: dict[CatalogKey, str]) -> None:
    done: set[CatalogKey] = set()

    def visit(key: CatalogKey, trail: tuple[CatalogKey, ...]) -> None:
        if key in trail:
            cycle = " -> ".join(str(k) for k in (*trail[trail.index(key) :], key))
            raise PolicyError(f"{where[trail[0]]}: implies: cycle {cycle}")
        if key in done:
            return
        for implied in defs[key].implies:
            visit(implied, (*trail, key))
        done.add(key)

    for key in defs:
        visit(key, ())


def parse_catalog(docs: Mapping[str, Mapping[str, Any]]) -> Catalog:
    """{file name ("gpu.toml"): parsed TOML} -> Catalog; every problem is a PolicyError."""
    defs: dict[CatalogKey, CapabilityDef] = {}
    where: dict[CatalogKey, str] = {}
    for filename, doc in docs.items():
        label = f"capabilities/{filename}"
        if not filename.endswith(".toml"):
            raise PolicyError(f"{label}: capability files end in .toml")
        stem = filename.removesuffix(".toml")
        key: CatalogKey
        if stem == StorageTemplate.STORAGE.value:
            key = StorageTemplate.STORAGE
        else:
            try:
                key = Capability(stem)
            except ValueError:
                raise PolicyError(
                    f"{label}: unknown capability {stem!r} (known files: {_known_files()})"
                ) from None
        defs[key] = _parse_one(label, key, doc)
        where[key] = label
    missing = [k for k in [*Capability, StorageTemplate.STORAGE] if k not in defs]
    if missing:
        files = ", ".join(f"{k}.toml" for k in missing)
        raise PolicyError(f"capabilities/: missing definitions: {files}")
    _check_cycles(defs, where)
    for key, d in defs.items():
        for implied in d.implies:
            if defs[implied].risk > d.risk:
                raise PolicyError(
                    f"{where[key]}: implies: {key} ({d.risk.label} risk) implies {implied} "
                    f"({defs[implied].risk.label} risk); a grant cannot be less risky than "
                    "what it includes"
                )
    order = [*Capability, StorageTemplate.STORAGE]
    return Catalog(defs=tuple(defs[k] for k in order))
