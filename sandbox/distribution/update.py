"""Update and rollback of an installed app, never under a running instance; never prints."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.distribution.bundle_reader import Progress, ReadLimits
from sandbox.distribution.install import (
    InstallAction,
    InstallPreview,
    InstallResult,
    commit_install,
    drop_unused_image,
    preview_install,
)
from sandbox.distribution.installed import InstalledApp, load_installed, save_installed
from sandbox.distribution.partial import PartialLoad
from sandbox.distribution.publishers import check_rollback
from sandbox.engine.adapter import DockerAdapter
from sandbox.errors import BundleError, LaunchError

POLL_S = 0.5


def installed_or_fail(app_id: str, data_home: Path) -> InstalledApp:
    app = load_installed(app_id, data_home)
    if app is None:
        raise BundleError(
            app_id, "is not installed (see `sandbox list`; `sandbox install` a full file)"
        )
    return app


def wait_until_idle(
    adapter: DockerAdapter,
    app: InstalledApp,
    wait_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once no container runs `app`'s image; wait up to `wait_s`, then refuse."""
    deadline = clock() + wait_s
    while True:
        running = adapter.images.running_containers_of(app.image_id)
        if not running:
            return
        if clock() >= deadline:
            ids = ", ".join(c[:12] for c in running)
            waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
            raise LaunchError(
                f"{app.app_id} {app.version} is running (container {ids} uses image "
                f"{app.image_id[:19]}){waited}: its image is not replaced under it; stop it "
                f"(`sandbox stop {app.app_id}`) or pass --wait SECONDS"
            )
        sleep(POLL_S)


def preview_update(
    path: Path,
    app_id: str,
    adapter: DockerAdapter,
    data_home: Path,
    *,
    site_policy: Path | None = None,
    overrides: Path | None = None,
    limits: ReadLimits | None = None,
    progress: Progress | None = None,
) -> InstallPreview:
    """Verify FILE as an update of the installed APP (full, thin or delta); nothing loaded."""
    installed_or_fail(app_id, data_home)
    preview = preview_install(
        path,
        adapter,
        data_home,
        site_policy=site_policy,
        overrides=overrides,
        limits=limits,
        progress=progress,
    )
    found = preview.bundle.header.manifest.app.id
    if found != app_id:
        raise BundleError(str(path), f"holds {found}, not an update of {app_id}")
    return preview


def commit_update(
    preview: InstallPreview,
    adapter: DockerAdapter,
    data_home: Path,
    *,
    wait_s: float = 0.0,
    progress: Progress | None = None,
    partial_load: PartialLoad = PartialLoad.AUTO,
) -> InstallResult:
    """Load and switch, keeping the replaced version for rollback; refuses (before loading)
    while an instance runs the installed image, unless it ends within `wait_s`. A first
    install (no previous version) goes straight through, so every install may come here."""
    previous = preview.previous
    recheck: Callable[[], None] | None = None
    if previous is not None and preview.action is not InstallAction.SAME:
        wait_until_idle(adapter, previous, wait_s)

        def recheck() -> None:
            # An instance may have started while the image loaded; the record must not
            # switch under it (the loaded image is taken back by commit_install).
            wait_until_idle(adapter, previous, wait_s)

    return commit_install(
        preview,
        adapter,
        data_home,
        progress=progress,
        partial_load=partial_load,
        keep_previous=True,
        before_save=recheck,
    )


@dataclass(frozen=True)
class RollbackResult:
    app: InstalledApp  # now installed
    replaced: InstalledApp  # kept as the new previous (rollback again to return)


def rollback(
    app_id: str, adapter: DockerAdapter, data_home: Path, *, wait_s: float = 0.0
) -> RollbackResult:
    """Switch APP back to its kept previous version; the current one becomes the previous."""
    current = installed_or_fail(app_id, data_home)
    previous = current.previous
    if previous is None:
        raise BundleError(app_id, "has no previous version to roll back to")
    if adapter.images.details(previous.image_id) is None:
        raise BundleError(app_id, f"the previous version's image {previous.image_id[:19]} is gone")
    check_rollback(app_id, current.pin, previous.pin, rebased_by_user=previous.rebased_by_user)
    wait_until_idle(adapter, current, wait_s)
    restored = dataclasses.replace(
        previous,
        previous=dataclasses.replace(current, previous=None),
        desktop_file=current.desktop_file,
        icon_file=current.icon_file,
        publisher_key=current.publisher_key,  # the pin never moves back with the version
        publisher_lineage=current.publisher_lineage,
    )
    save_installed(restored, data_home)
    return RollbackResult(restored, current)


def switch_to(
    current: InstalledApp,
    new: InstalledApp,
    adapter: DockerAdapter,
    data_home: Path,
    *,
    wait_s: float = 0.0,
) -> str | None:
    """Record `new` as installed with `current` kept; drop the version kept before. Returns
    the image id removed, if any."""
    wait_until_idle(adapter, current, wait_s)
    saved = dataclasses.replace(new, previous=dataclasses.replace(current, previous=None))
    save_installed(saved, data_home)
    older = current.previous
    if older is not None and older.image_id not in (saved.image_id, current.image_id):
        try:
            return drop_unused_image(adapter, older, data_home)
        except LaunchError:
            return None
    return None
