"""The resolve step of a launch: APP-ID or IMAGE -> the image to run and its manifest; no launch.

An installed app runs the image its install record names; any other valid APP-ID the newest
local image whose manifest label names it; anything else is taken as an image reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.engine.adapter import DockerAdapter, ImageConfig
from sandbox.errors import ManifestError
from sandbox.host import names
from sandbox.policy.manifest import LABEL_MANIFEST, Manifest, manifest_from_labels
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.vocabulary import Permission
from sandbox.runtime.prepare import Prepared, ResolvedImage, prepare

if TYPE_CHECKING:
    from sandbox.distribution.installed import InstalledApp


@dataclass(frozen=True)
class Resolved:
    """A launch target resolved: the image for the runtime, and its install record if any."""

    image: ResolvedImage
    installed: InstalledApp | None = None  # the record when TARGET names an installed app

    def not_consented(self, plan: LaunchPlan) -> tuple[Permission, ...] | None:
        """What `plan` gives beyond the install-time consent; None when nothing was installed
        (so the whole plan needs consent)."""
        return self.installed.uncovered(plan) if self.installed is not None else None


def resolve(target: str, *, engine_url: str | None = None) -> Resolved:
    """Find what TARGET names on the engine at `engine_url` (default: DOCKER_HOST, context)."""
    adapter = DockerAdapter.from_env(engine_url)
    installed = None
    if names.is_valid_app_id(target):
        # here: only an APP-ID can have a record, and an IMAGE run skips the import
        from sandbox.distribution.installed import load_installed

        installed = load_installed(target)
    image, manifest, config = resolve_image(adapter, target, installed)
    return Resolved(ResolvedImage(image, manifest, adapter.url, engine_url, config), installed)


def plan(
    target: str,
    *,
    engine_url: str | None = None,
    site_policy: Path | None = None,
    overrides: Path | None = None,
) -> Prepared:
    """Resolve APP-ID or IMAGE, probe and plan. Show `prepared.plan` to the user
    (sandbox.policy.review.review_text) and call launch() only after they agree."""
    resolved = resolve(target, engine_url=engine_url)
    return prepare(resolved.image, site_policy=site_policy, overrides=overrides)


def resolve_image(
    adapter: DockerAdapter, target: str, installed: InstalledApp | None = None
) -> tuple[str, Manifest, ImageConfig | None]:
    """APP-ID -> its installed image (`installed`, the app's install record), else the newest
    local image whose manifest label names it; else TARGET is an image. The image's config
    comes from the same inspect as its labels (None from the image list: launch reads it)."""
    if installed is not None:
        return installed.image_id, *_manifest_of(adapter, installed.image_id)
    if names.is_valid_app_id(target):
        newest = _newest_labelled(adapter, target)
        if newest is not None:
            return (*newest, None)
    return target, *_manifest_of(adapter, target)


def _newest_labelled(adapter: DockerAdapter, app_id: str) -> tuple[str, Manifest] | None:
    best: tuple[int, str, Manifest] | None = None
    for image in adapter.images_with_label(LABEL_MANIFEST):
        try:
            manifest = manifest_from_labels(dict(image.labels))
        except ManifestError:
            continue
        if manifest.app.id == app_id and (best is None or image.created > best[0]):
            best = (image.created, image.tags[0] if image.tags else image.id, manifest)
    return None if best is None else (best[1], best[2])


def _manifest_of(adapter: DockerAdapter, image: str) -> tuple[Manifest, ImageConfig]:
    config = adapter.image_config(image)
    try:
        return manifest_from_labels(dict(config.labels)), config
    except ManifestError as exc:
        where = f"image {image}: {exc.field}" if exc.field else f"image {image}"
        raise ManifestError(where, exc.problem) from None
