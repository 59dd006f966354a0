"""Install, update and uninstall of bundles: preview (verify + review) then commit; never prints."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.distribution import desktop
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
from sandbox.errors import BundleError, LaunchError, ManifestError
from sandbox.policy.facts import HostFacts
from sandbox.policy.layers import UserOverride, adds_permissions
from sandbox.policy.manifest import manifest_from_labels
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.vocabulary import Permission
from sandbox.runtime.docker_adapter import DockerAdapter


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
        current = adapter.image_details(tag)
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
    from sandbox.runtime.planning import plan_for, probe_for

    bundle = verify_bundle(path, limits, progress)
    manifest = bundle.header.manifest
    _check_tags(adapter, bundle)
    host = facts if facts is not None else probe_for(manifest)
    plan = plan_for(manifest, host, site_policy=site_policy, overrides=overrides)
    previous = load_installed(manifest.app.id, data_home)
    if previous is None:
        return InstallPreview(bundle, plan, InstallAction.INSTALL, None, (), host)
    if previous.image_id == bundle.header.image_id and adapter.image_details(previous.image_id):
        return InstallPreview(bundle, plan, InstallAction.SAME, previous, (), host)
    added = adds_permissions(previous.manifest, manifest)
    return InstallPreview(bundle, plan, InstallAction.UPDATE, previous, added, host)


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


def _drop_image(adapter: DockerAdapter, app: InstalledApp, data_home: Path) -> str | None:
    """Remove `app`'s image unless another installed app uses it; the image id when removed."""
    others = [a for a in list_installed(data_home) if a.app_id != app.app_id]
    if any(a.image_id == app.image_id for a in others):
        return None
    details = adapter.image_details(app.image_id)
    if details is None:
        return None
    for tag in details.tags:
        if tag in app.tags:
            adapter.image_remove(tag)
    if adapter.image_details(app.image_id) is not None:
        adapter.image_remove(app.image_id)
    return app.image_id


def commit_install(
    preview: InstallPreview,
    adapter: DockerAdapter,
    data_home: Path,
    *,
    progress: Progress | None = None,
    now: datetime.datetime | None = None,
) -> InstallResult:
    """Load the verified bundle, then write the record, icon and menu entry."""
    bundle = preview.bundle
    header = bundle.header
    if preview.action is not InstallAction.SAME:
        adapter.image_load_stream(stream_verified(bundle, progress), bundle.size)
        loaded = adapter.image_details(header.image_id)
        if loaded is None:
            raise LaunchError(f"the engine did not keep image {header.image_id} after loading")
    notes: list[str] = []
    files = desktop.install_entry(header.manifest, bundle.icon, data_home)
    if bundle.icon is None and header.manifest.app.icon:
        notes.append(f"no icon: {header.manifest.app.icon} is not a PNG or SVG file in the image")
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
    )
    save_installed(app, data_home)
    notes += desktop.register_bundle_type(data_home)
    removed = None
    previous = preview.previous
    if previous is not None and previous.image_id != header.image_id:
        try:
            removed = _drop_image(adapter, previous, data_home)
        except LaunchError as exc:
            notes.append(f"kept the previous image {previous.image_id[:19]}: {exc}")
    return InstallResult(app, files, removed, tuple(notes))


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
        removed_image = _drop_image(adapter, app, data_home)
    except LaunchError as exc:
        notes.append(f"kept image {app.image_id[:19]}: {exc}")
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
