"""The capability catalog (policies/capabilities/*.toml) parsed into typed definitions. Pure."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sandbox.errors import PolicyError
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


def _text(doc: Mapping[str, Any], where: str, key: str, max_len: int, storage: bool) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise PolicyError(f"{where}: {key}: must be a string")
    if not value.strip() or value != value.strip():
        raise PolicyError(f"{where}: {key}: must be non-empty without surrounding whitespace")
    if len(value) > max_len:
        raise PolicyError(f"{where}: {key}: is {len(value)} characters long (at most {max_len})")
    if any(ord(c) < 0x20 for c in value):
        raise PolicyError(f"{where}: {key}: must be one line")
    rest = value.replace(NAME_PLACEHOLDER, "") if storage else value
    if "{" in rest or "}" in rest:
        allowed = f"only {NAME_PLACEHOLDER} is allowed" if storage else "no placeholders here"
        raise PolicyError(f"{where}: {key}: unexpected brace ({allowed})")
    return value


def _parse_one(where: str, key: CatalogKey, doc: Mapping[str, Any]) -> CapabilityDef:
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where}: must be a table")
    for k in doc:
        if k not in _REQUIRED + _OPTIONAL:
            known = ", ".join(sorted(_REQUIRED + _OPTIONAL))
            raise PolicyError(f"{where}: {k}: unknown key (known: {known})")
    for k in _REQUIRED:
        if k not in doc:
            raise PolicyError(f"{where}: {k}: is required")
    storage = key is StorageTemplate.STORAGE
    raw_risk = doc["risk"]
    try:
        risk = Risk[str(raw_risk).upper()] if isinstance(raw_risk, str) else None
    except KeyError:
        risk = None
    if risk is None or raw_risk != risk.label:
        known = ", ".join(r.label for r in Risk)
        raise PolicyError(f"{where}: risk: must be one of {known}, not {raw_risk!r}")
    raw_implies = doc.get("implies", [])
    if not isinstance(raw_implies, list):
        raise PolicyError(f"{where}: implies: must be an array of capability names")
    implies: list[Capability] = []
    for i, item in enumerate(raw_implies):
        try:
            cap = Capability(item) if isinstance(item, str) else None
        except ValueError:
            cap = None
        if cap is None:
            known = ", ".join(map(str, Capability))
            raise PolicyError(
                f"{where}: implies[{i}]: unknown capability {item!r} (known: {known})"
            )
        if cap == key:
            raise PolicyError(f"{where}: implies[{i}]: a capability cannot imply itself")
        if cap in implies:
            raise PolicyError(f"{where}: implies[{i}]: duplicate {item!r}")
        implies.append(cap)
    return CapabilityDef(
        key=key,
        title=_text(doc, where, "title", MAX_TITLE, storage),
        summary=_text(doc, where, "summary", MAX_SUMMARY, storage),
        risk=risk,
        implies=tuple(implies),
        grants=_text(doc, where, "grants", MAX_GRANTS, storage),
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
