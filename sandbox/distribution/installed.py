"""Installed-app records under $XDG_DATA_HOME/sandbox/installed/<app-id>.json; no engine calls."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sandbox.distribution.bundle_format import BaseRef
from sandbox.distribution.publishers import Pin
from sandbox.errors import BundleError, ManifestError, PolicyError
from sandbox.fileutil import write_atomic
from sandbox.host import names
from sandbox.policy.layers import implied
from sandbox.policy.manifest import Manifest, dump_manifest, parse_manifest
from sandbox.policy.plan import GrantState, LaunchPlan
from sandbox.policy.vocabulary import Permission, parse_permission, permission_sort_key

RECORD_VERSION: Final = 1
INSTALLED_DIR: Final = Path("sandbox") / "installed"
MAX_RECORD_BYTES: Final = 256 * 1024
# What the user agreed to: a grant the host cannot serve today (no webcam plugged in) was still
# consented to, so it does not ask again once the device appears.
CONSENTED_STATES: Final = frozenset(
    {GrantState.GRANTED, GrantState.UNAVAILABLE, GrantState.FALLBACK_UNUSED}
)


@dataclass(frozen=True)
class InstalledApp:
    app_id: str
    version: str
    image_id: str  # sha256:<hex>; what `sandbox run APP-ID` should start
    tags: tuple[str, ...]  # the names the bundle gave the image
    manifest: Manifest
    granted: frozenset[Permission]  # consented to at install (or at the last update)
    installed_at: str  # ISO 8601, UTC
    bundle_sha256: str
    desktop_file: str | None = None
    icon_file: str | None = None
    base: BaseRef | None = None  # the base image the app's lower layers are (for rebase)
    previous: InstalledApp | None = None  # the version `sandbox rollback` restores (one deep)
    # The publisher pin (distribution/publishers.py): None when installed unsigned.
    publisher_key: str | None = None
    publisher_lineage: tuple[str, ...] = ()  # keys the pin rotated from, ending with it
    signed_by: str | None = None  # the key this version's file was signed by
    rebased_by_user: bool = False  # this image was made here by `sandbox rebase`, signed by no one

    @property
    def pin(self) -> Pin:
        return Pin(self.publisher_key, self.publisher_lineage, self.signed_by)

    def uncovered(
        self, plan_or_granted: LaunchPlan | Iterable[Permission]
    ) -> tuple[Permission, ...]:
        """Permissions a plan would give that were not consented to at install: ask if any."""
        wanted = (
            consented(plan_or_granted)
            if isinstance(plan_or_granted, LaunchPlan)
            else frozenset(plan_or_granted)
        )
        covered = set(self.granted)
        for p in self.granted:
            covered |= implied(p, None)
        return tuple(sorted(wanted - covered, key=permission_sort_key))


def consented(plan: LaunchPlan) -> frozenset[Permission]:
    """The permissions a user agrees to when accepting this plan's review."""
    return frozenset(s.permission for s in plan.statuses if s.state in CONSENTED_STATES)


def default_data_home(env: Mapping[str, str] | None = None) -> Path:
    """The invoking user's $XDG_DATA_HOME (under sudo: that user's, as the runtime does)."""
    from sandbox.probes import user

    return Path(user.data_home(os.environ if env is None else env))


def record_path(app_id: str, data_home: Path) -> Path:
    return data_home / INSTALLED_DIR / f"{names.check_app_id(app_id)}.json"


def dump_record(app: InstalledApp) -> dict[str, Any]:
    return {
        "record-version": RECORD_VERSION,
        "app-id": app.app_id,
        "version": app.version,
        "image-id": app.image_id,
        "tags": list(app.tags),
        "manifest": dump_manifest(app.manifest),
        "granted": sorted(str(p) for p in app.granted),
        "installed-at": app.installed_at,
        "bundle-sha256": app.bundle_sha256,
        "desktop-file": app.desktop_file,
        "icon-file": app.icon_file,
        "base": _dump_base(app.base),
        "previous": dump_record(app.previous) if app.previous is not None else None,
        "publisher-key": app.publisher_key,
        "publisher-lineage": list(app.publisher_lineage),
        "signed-by": app.signed_by,
        "rebased-by-user": app.rebased_by_user,
    }


def _dump_base(base: BaseRef | None) -> dict[str, Any] | None:
    if base is None:
        return None
    return {"name": base.name, "id": base.image_id, "diff-ids": list(base.diff_ids)}


def _parse_base(raw: Any) -> BaseRef | None:
    if raw is None:
        return None
    return BaseRef(
        None if raw["name"] is None else str(raw["name"]),
        str(raw["id"]),
        tuple(str(d) for d in raw["diff-ids"]),
    )


def _parse_pin(doc: dict[str, Any]) -> dict[str, Any]:
    """The publisher fields; a record written before signatures has none (unsigned)."""
    key, signed_by = doc.get("publisher-key"), doc.get("signed-by")
    return {
        "publisher_key": None if key is None else str(key),
        "publisher_lineage": tuple(str(k) for k in doc.get("publisher-lineage") or ()),
        "signed_by": None if signed_by is None else str(signed_by),
        "rebased_by_user": doc.get("rebased-by-user") is True,
    }


def parse_record(doc: Any, source: str) -> InstalledApp:
    try:
        if not isinstance(doc, dict) or doc.get("record-version") != RECORD_VERSION:
            raise BundleError(source, f"not an installed-app record of version {RECORD_VERSION}")
        manifest = parse_manifest(doc["manifest"])
        app = InstalledApp(
            app_id=str(doc["app-id"]),
            version=str(doc["version"]),
            image_id=str(doc["image-id"]),
            tags=tuple(str(t) for t in doc["tags"]),
            manifest=manifest,
            granted=frozenset(parse_permission(str(p)) for p in doc["granted"]),
            installed_at=str(doc["installed-at"]),
            bundle_sha256=str(doc["bundle-sha256"]),
            desktop_file=doc.get("desktop-file"),
            icon_file=doc.get("icon-file"),
            base=_parse_base(doc.get("base")),
            previous=(
                parse_record(doc["previous"], f"{source}: previous")
                if doc.get("previous") is not None
                else None
            ),
            **_parse_pin(doc),
        )
    except (KeyError, TypeError) as exc:
        raise BundleError(source, f"record lacks or mistypes {exc}") from None
    except (ManifestError, PolicyError) as exc:
        raise BundleError(source, f"record is invalid: {exc}") from None
    if app.app_id != manifest.app.id:
        raise BundleError(source, f"app-id {app.app_id!r} differs from its manifest's")
    return app


def load_installed(app_id: str, data_home: Path | None = None) -> InstalledApp | None:
    """The record of `app_id`, or None when it is not installed."""
    path = record_path(app_id, data_home or default_data_home())
    try:
        with path.open("rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_RECORD_BYTES:
        raise BundleError(str(path), f"larger than {MAX_RECORD_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(str(path), f"invalid JSON: {exc}") from None
    app = parse_record(doc, str(path))
    if app.app_id != app_id:
        raise BundleError(str(path), f"holds {app.app_id!r}, not {app_id!r}")
    return app


def list_installed(data_home: Path | None = None) -> tuple[InstalledApp, ...]:
    """Every installed app, sorted by id; files that are not records are skipped."""
    directory = (data_home or default_data_home()) / INSTALLED_DIR
    try:
        names_found = sorted(p.stem for p in directory.glob("*.json"))
    except OSError:
        return ()
    apps = []
    for app_id in names_found:
        if not names.is_valid_app_id(app_id):
            continue
        app = load_installed(app_id, data_home or default_data_home())
        if app is not None:
            apps.append(app)
    return tuple(apps)


def save_installed(app: InstalledApp, data_home: Path) -> Path:
    """Write the record atomically (a crash leaves the old one or the new one)."""
    path = record_path(app.app_id, data_home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(dump_record(app), indent=2, sort_keys=True) + "\n"
    write_atomic(path, text.encode("utf-8"), 0o600, durable=True)
    return path


def remove_installed(app_id: str, data_home: Path) -> bool:
    path = record_path(app_id, data_home)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
