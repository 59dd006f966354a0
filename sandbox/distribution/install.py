"""Install, update and uninstall of bundles: preview (verify + review) then commit; never prints."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.distribution import desktop
from sandbox.distribution.bundle_format import BaseRef, BundleHeader, BundleKind
from sandbox.distribution.bundle_reader import (
    Progress,
    ReadLimits,
    VerifiedBundle,
    stream_verified,
    verify_bundle,
)
from sandbox.distribution.installed import (
    InstalledApp,
    consented,
    list_installed,
    load_installed,
    remove_installed,
    save_installed,
)
from sandbox.distribution.partial import (
    LoadMethod,
    LoadOutcome,
    PartialLoad,
    find_source,
    load_partial,
)
from sandbox.distribution.publishers import NO_PIN, Pin, first_pin, next_pin
from sandbox.engine.adapter import DockerAdapter
from sandbox.errors import BundleError, LaunchError, ManifestError, SandboxError
from sandbox.policy.facts import HostFacts
from sandbox.policy.layers import UserOverride, adds_permissions
from sandbox.policy.manifest import manifest_from_labels
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.vocabulary import Permission


class InstallAction(enum.StrEnum):
    INSTALL = "install"  # not installed yet: full review and consent
    UPDATE = "update"  # another image of an installed app: consent only if it asks more
    SAME = "same"  # this very image is installed: nothing to do


@dataclass(frozen=True)
class InstallPreview:
    bundle: VerifiedBundle
    plan: LaunchPlan
    action: InstallAction
    previous: InstalledApp | None
    new_permissions: tuple[Permission, ...]  # what an update asks beyond the installed version
    facts: HostFacts
    base_source: str | None = None  # the local image holding the layers a partial file omits
    pin: Pin = NO_PIN  # the publisher pin the record will hold once committed

    @property
    def needs_consent(self) -> bool:
        return self.action is InstallAction.INSTALL or bool(self.new_permissions)


@dataclass(frozen=True)
class InstallResult:
    app: InstalledApp
    files: desktop.DesktopFiles
    removed_image: str | None  # the previous version's image, when nothing else uses it
    notes: tuple[str, ...]


def _check_tags(adapter: DockerAdapter, bundle: VerifiedBundle) -> None:
    """A bundle may not move a local name away from an image of another app (or the base)."""
    app_id = bundle.header.manifest.app.id
    for tag in bundle.header.tags:
        current = adapter.images.details(tag)
        if current is None or current.id == bundle.header.image_id:
            continue
        try:
            owner = manifest_from_labels(current.labels).app.id
        except ManifestError:
            owner = None
        if owner != app_id:
            raise BundleError(
                "manifest.json",
                f"RepoTags would take the name {tag} from image {current.id[:19]} "
                f"({'not a sandbox app' if owner is None else owner})",
            )


def preview_install(
    path: Path,
    adapter: DockerAdapter,
    data_home: Path,
    *,
    facts: HostFacts | None = None,
    site_policy: Path | None = None,
    overrides: Path | None = None,
    limits: ReadLimits | None = None,
    progress: Progress | None = None,
) -> InstallPreview:
    """Verify the bundle and plan it for this host; nothing is written or loaded."""
    from sandbox.runtime.planning import plan_merged, policy_for, probe_merged

    bundle = verify_bundle(path, limits, progress)
    manifest = bundle.header.manifest
    previous = load_installed(manifest.app.id, data_home)
    same = (
        previous is not None
        and previous.image_id == bundle.header.image_id
        and adapter.images.details(previous.image_id) is not None
    )
    pin = _pin_for(bundle, previous, same, site_policy)  # refuses before anything else runs
    _check_tags(adapter, bundle)
    source = None
    if bundle.header.base is not None and adapter.images.details(bundle.header.image_id) is None:
        needed = tuple(r.diff_id for r in bundle.header.omitted)
        source = find_source(adapter, bundle.header.base, needed).id
    merged = policy_for(manifest, site_policy=site_policy, overrides=overrides)
    host = facts if facts is not None else probe_merged(merged)
    plan = plan_merged(merged, host)
    if previous is None:
        return InstallPreview(bundle, plan, InstallAction.INSTALL, None, (), host, source, pin)
    if same:
        return InstallPreview(bundle, plan, InstallAction.SAME, previous, (), host, source, pin)
    added = adds_permissions(previous.manifest, manifest)
    return InstallPreview(bundle, plan, InstallAction.UPDATE, previous, added, host, source, pin)


def _pin_for(
    bundle: VerifiedBundle, previous: InstalledApp | None, same: bool, site_policy: Path | None
) -> Pin:
    """The publisher pin after this file: the installed app's key rules (publishers.py)."""
    from sandbox.config.layers import load_site_policy

    if previous is not None and same:
        return previous.pin  # nothing will change
    required = load_site_policy(site_policy).require_signature
    source = str(bundle.path)
    if previous is None:
        return first_pin(bundle.publisher, require_signature=required, source=source)
    return next_pin(
        previous.app_id, previous.pin, bundle.publisher, require_signature=required, source=source
    )


def replan(
    preview: InstallPreview, override: UserOverride, *, site_policy: Path | None = None
) -> InstallPreview:
    """The preview as it would be with `override` (the user's edits, not written yet)."""
    from sandbox.config.layers import write_override
    from sandbox.runtime.planning import plan_for

    with tempfile.TemporaryDirectory(prefix="sandbox-edit-") as tmp:
        write_override(override, Path(tmp))
        plan = plan_for(
            preview.bundle.header.manifest,
            preview.facts,
            site_policy=site_policy,
            overrides=Path(tmp),
        )
    return dataclasses.replace(preview, plan=plan)


def drop_unused_image(adapter: DockerAdapter, app: InstalledApp, data_home: Path) -> str | None:
    """Remove `app`'s image unless another installed app (or its kept previous version) or a
    running container uses it; the image id when removed. The caller rules on its own app."""
    in_use = set()
    for a in list_installed(data_home):
        if a.app_id != app.app_id:
            in_use.add(a.image_id)
            if a.previous is not None:
                in_use.add(a.previous.image_id)
    if app.image_id in in_use or adapter.images.running_containers_of(app.image_id):
        return None
    details = adapter.images.details(app.image_id)
    if details is None:
        return None
    for tag in details.tags:
        if tag in app.tags:
            adapter.images.remove(tag)
    left = adapter.images.details(app.image_id)
    if left is not None:
        if left.tags:
            # Names the app never had (the user's own tag, another install of the same image):
            # removing by id would delete the last of them with it, so the image stays.
            return None
        adapter.images.remove(app.image_id)
    return app.image_id


def commit_install(
    preview: InstallPreview,
    adapter: DockerAdapter,
    data_home: Path,
    *,
    progress: Progress | None = None,
    now: datetime.datetime | None = None,
    partial_load: PartialLoad = PartialLoad.AUTO,
    keep_previous: bool = False,
    before_save: Callable[[], None] | None = None,
) -> InstallResult:
    """Load the verified bundle, then write the record, icon and menu entry. With
    `keep_previous` (an update) the replaced version stays, for `sandbox rollback`.
    `before_save` runs after the load, right before anything is written; when it raises, the
    image this call loaded is removed again and nothing is written."""
    bundle = preview.bundle
    header = bundle.header
    loaded_here, notes = _load_for_commit(adapter, preview, progress, partial_load)
    if before_save is not None:
        try:
            before_save()
        except SandboxError:
            if loaded_here:
                _unload(adapter, header)
            raise
    files = desktop.install_entry(header.manifest, bundle.icon, data_home)
    if bundle.icon is None and header.manifest.app.icon:
        notes.append(f"no icon: {header.manifest.app.icon} is not a PNG or SVG file in the image")
    app = _installed_record(preview, files, now, keep_previous)
    save_installed(app, data_home)
    notes += desktop.register_bundle_type(data_home)
    removed = _drop_replaced(
        adapter, app, preview.previous, data_home, keep_previous=keep_previous, notes=notes
    )
    return InstallResult(app, files, removed, tuple(notes))


def _load_for_commit(
    adapter: DockerAdapter,
    preview: InstallPreview,
    progress: Progress | None,
    partial_load: PartialLoad,
) -> tuple[bool, list[str]]:
    """Load the image unless this very one is installed: (whether this call loaded it, notes)."""
    if preview.action is InstallAction.SAME:
        return False, []
    header = preview.bundle.header
    loaded_here = adapter.images.details(header.image_id) is None
    outcome = load_verified(adapter, preview, progress=progress, mode=partial_load)
    loaded = adapter.images.details(header.image_id)
    if loaded is None:
        raise LaunchError(f"the engine did not keep image {header.image_id} after loading")
    notes: list[str] = []
    if outcome is not None and outcome.method is LoadMethod.RECONSTRUCTED:
        why = (
            f"the engine refused the partial archive: {outcome.engine_refusal}"
            if outcome.engine_refusal
            else "asked for"
        )
        notes.append(f"rebuilt the full image on the client from {preview.base_source} ({why})")
    return loaded_here, notes


def _installed_record(
    preview: InstallPreview,
    files: desktop.DesktopFiles,
    now: datetime.datetime | None,
    keep_previous: bool,
) -> InstalledApp:
    """The record of the committed version; with `keep_previous`, the replaced one inside it."""
    bundle = preview.bundle
    header = bundle.header
    when = (now or datetime.datetime.now(datetime.UTC)).isoformat(timespec="seconds")
    granted = consented(preview.plan)
    if preview.action is InstallAction.SAME and preview.previous is not None:
        granted = preview.previous.granted
    app = InstalledApp(
        app_id=header.manifest.app.id,
        version=header.manifest.app.version,
        image_id=header.image_id,
        tags=header.tags,
        manifest=header.manifest,
        granted=granted,
        installed_at=when,
        bundle_sha256=bundle.sha256,
        desktop_file=str(files.desktop),
        icon_file=str(files.icon) if files.icon else None,
        base=recorded_base(header, preview.previous),
        publisher_key=preview.pin.key,
        publisher_lineage=preview.pin.lineage,
        signed_by=preview.pin.signed_by,
    )
    previous = preview.previous
    if keep_previous and previous is not None and previous.image_id != header.image_id:
        app = dataclasses.replace(app, previous=dataclasses.replace(previous, previous=None))
    return app


def _drop_replaced(
    adapter: DockerAdapter,
    app: InstalledApp,
    previous: InstalledApp | None,
    data_home: Path,
    *,
    keep_previous: bool,
    notes: list[str],
) -> str | None:
    """Remove the image of the version dropped now, when unused: the replaced one, or (keeping
    that) the one it had kept; a refusal becomes a note."""
    if previous is None or previous.image_id == app.image_id:
        return None  # nothing was replaced
    drop = previous.previous if keep_previous else previous
    if drop is None or drop.image_id in (app.image_id, _kept_id(app)):
        return None
    try:
        return drop_unused_image(adapter, drop, data_home)
    except LaunchError as exc:
        notes.append(f"kept the older image {drop.image_id[:19]}: {exc}")
        return None


def _unload(adapter: DockerAdapter, header: BundleHeader) -> None:
    """Best effort: take back an image loaded for an install that did not go through."""
    try:
        for tag in header.tags:
            current = adapter.images.details(tag)
            if current is not None and current.id == header.image_id:
                adapter.images.remove(tag)
        left = adapter.images.details(header.image_id)
        if left is not None and not left.tags:  # by id only when no other name holds it
            adapter.images.remove(header.image_id)
    except LaunchError:
        pass  # the caller's error says what went wrong; a leftover image is only disk


def _kept_id(app: InstalledApp) -> str | None:
    return app.previous.image_id if app.previous is not None else None


def recorded_base(header: BundleHeader, previous: InstalledApp | None) -> BaseRef | None:
    """The base an installed app sits on, as far as its files tell: a thin bundle names it; a
    delta or full update keeps the previous record's while its layers still lie underneath."""
    candidates = [header.base if header.kind is BundleKind.THIN else None]
    if previous is not None:
        candidates.append(previous.base)
    ours = tuple(r.diff_id for r in header.layers)
    for base in candidates:
        if base is not None and ours[: len(base.diff_ids)] == base.diff_ids:
            return base
    return None


def load_verified(
    adapter: DockerAdapter,
    preview: InstallPreview,
    *,
    progress: Progress | None = None,
    mode: PartialLoad = PartialLoad.AUTO,
) -> LoadOutcome | None:
    """Send the verified file to the engine; a partial one through partial.load_partial."""
    bundle = preview.bundle
    if bundle.header.base is None or preview.base_source is None:
        adapter.images.load_stream(stream_verified(bundle, progress), bundle.size)
        return None
    diff_ids = tuple(r.diff_id for r in bundle.header.layers)
    return load_partial(
        adapter,
        lambda: stream_verified(bundle, progress),
        bundle.size,
        diff_ids,
        preview.base_source,
        mode=mode,
    )


@dataclass(frozen=True)
class UninstallResult:
    app: InstalledApp
    removed_files: tuple[Path, ...]
    removed_image: str | None
    purged: tuple[Path, ...]
    kept_data: tuple[Path, ...]
    notes: tuple[str, ...]


def uninstall(
    app_id: str, adapter: DockerAdapter, data_home: Path, *, purge: bool = False
) -> UninstallResult:
    """Remove the entry, icons, record and (when unused) the image; data only with `purge`."""
    from sandbox.providers import storage

    app = load_installed(app_id, data_home)
    if app is None:
        raise BundleError(app_id, "is not installed")
    notes: list[str] = []
    removed_image = None
    try:
        removed_image = drop_unused_image(adapter, app, data_home)
    except LaunchError as exc:
        notes.append(f"kept image {app.image_id[:19]}: {exc}")
    if app.previous is not None and app.previous.image_id != app.image_id:
        try:
            drop_unused_image(adapter, app.previous, data_home)
        except LaunchError as exc:
            notes.append(f"kept the previous version's image {app.previous.image_id[:19]}: {exc}")
    files = desktop.remove_entry(app_id, data_home)
    remove_installed(app_id, data_home)
    notes += desktop.refresh_caches(data_home)
    purged: tuple[Path, ...] = ()
    kept: tuple[Path, ...] = ()
    if purge:
        purged = tuple(d.path for d in storage.purge_storage(data_home, app_id))
    else:
        kept = tuple(d.path for d in storage.list_storage(data_home, app_id))
    return UninstallResult(app, files, removed_image, purged, kept, tuple(notes))
