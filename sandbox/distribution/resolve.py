"""The resolve step of a launch: APP-ID or IMAGE -> image, manifest, identity; no launch, no write.

An app id belongs to its installed app (docs/security.md "Identity"): APP-ID names installed
apps only; IMAGE runs as the installed app when it is that app's installed image, is refused
when it claims an installed app's id but is another image, and otherwise runs as a throwaway
identity of its own (host/names.unverified_app_id) whose storage, cgroup and records are no
installed app's. A hostile label makes only its own image unusable: no other launch reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.engine.adapter import DockerAdapter, ImageConfig
from sandbox.errors import (
    BundleError,
    IdentityError,
    LaunchError,
    ManifestError,
    UnavailableError,
)
from sandbox.host import names
from sandbox.policy.manifest import Manifest, manifest_from_labels
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.vocabulary import Permission
from sandbox.runtime.prepare import Prepared, ResolvedImage, prepare

if TYPE_CHECKING:
    from sandbox.distribution.installed import InstalledApp

_DIGEST = "sha256:"


@dataclass(frozen=True)
class Resolved:
    """A launch target resolved: the image for the runtime, and its install record if any."""

    image: ResolvedImage
    installed: InstalledApp | None = None  # the record when the target is an installed app

    def not_consented(self, plan: LaunchPlan) -> tuple[Permission, ...] | None:
        """What `plan` gives beyond the install-time consent; None when nothing was installed
        (so the whole plan needs consent)."""
        return self.installed.uncovered(plan) if self.installed is not None else None


def resolve(
    target: str, *, engine_url: str | None = None, data_home: Path | None = None
) -> Resolved:
    """Find what TARGET names on the engine at `engine_url` (default: DOCKER_HOST, context);
    install records are read from `data_home` (default: the invoking user's)."""
    adapter = DockerAdapter.from_env(engine_url)
    return resolve_on(adapter, target, Records(data_home), engine_url)


def plan(
    target: str,
    *,
    engine_url: str | None = None,
    site_policy: Path | None = None,
    overrides: Path | None = None,
) -> Prepared:
    """Resolve APP-ID or IMAGE, probe and plan. Show `prepare.review(prepared)` to the user and
    call launch() only after they agree."""
    resolved = resolve(target, engine_url=engine_url)
    return prepare(resolved.image, site_policy=site_policy, overrides=overrides)


def plan_candidate(image: str, app: InstalledApp, *, engine_url: str | None = None) -> Prepared:
    """Plan a local image that is about to become `app`'s installed image (the smoke check of a
    user's own rebase) as that app: it must name the app's id, and it runs as the app."""
    adapter = DockerAdapter.from_env(engine_url)
    config = adapter.image_config(image)
    manifest = _manifest_from(dict(config.labels), image)
    if manifest.app.id != app.app_id:
        raise IdentityError(f"image {image} names {manifest.app.id}, not {app.app_id}")
    resolved = ResolvedImage(config.id, manifest, adapter.url, engine_url, config)
    return prepare(resolved)


def is_installed_image(app: InstalledApp, image_id: str) -> bool:
    """Whether the local image `image_id` is `app`'s installed image: the one hook that says an
    image may run as an installed app (a publisher-key check extends it, never widens it)."""
    return _bare(image_id) == _bare(app.image_id)


class Records:
    """Install records by app id, read from one data home (a seam for unit tests)."""

    def __init__(self, data_home: Path | None = None) -> None:
        self.data_home = data_home

    def get(self, app_id: str) -> InstalledApp | None:
        from sandbox.distribution.installed import load_installed

        return load_installed(app_id, self.data_home)


def resolve_on(
    adapter: DockerAdapter, target: str, records: Records, engine_url: str | None = None
) -> Resolved:
    """`resolve` on a given engine client and install records."""
    installed = records.get(target) if names.is_valid_app_id(target) else None
    if installed is not None:
        config = adapter.image_config(installed.image_id)
        manifest = _manifest_from(dict(config.labels), installed.image_id)
        if manifest.app.id != installed.app_id:
            raise BundleError(
                installed.app_id, f"installed image {installed.image_id} names {manifest.app.id}"
            )
        image = ResolvedImage(installed.image_id, manifest, adapter.url, engine_url, config)
        return Resolved(image, installed)
    config, manifest = _image_by_reference(adapter, target)
    image_id = config.id
    record = records.get(manifest.app.id)
    if record is not None:
        if not is_installed_image(record, image_id):
            raise IdentityError(
                f"image {target} names {record.app_id}, which is installed from another image "
                f"({record.image_id[:19]}); an app id belongs to its installed app. Run the "
                f"installed app with `sandbox run {record.app_id}`, update it with a file "
                "signed by its publisher, or uninstall it first"
            )
        return Resolved(ResolvedImage(image_id, manifest, adapter.url, engine_url, config), record)
    identity = names.unverified_app_id(manifest.app.id, image_id)
    unverified = dataclasses.replace(manifest, app=dataclasses.replace(manifest.app, id=identity))
    return Resolved(
        ResolvedImage(
            image_id, unverified, adapter.url, engine_url, config, unverified_of=manifest.app.id
        )
    )


def _image_by_reference(adapter: DockerAdapter, target: str) -> tuple[ImageConfig, Manifest]:
    """TARGET as a local image: (its config, read in one inspect, and its manifest); a valid
    APP-ID the engine does not know as an image is an app that is not installed."""
    try:
        info = adapter.image_config(target)
    except UnavailableError:
        raise
    except LaunchError:  # not found, or not a valid reference (an APP-ID with capitals)
        if names.is_valid_app_id(target):
            raise IdentityError(
                f"{target} is not installed (`sandbox install FILE.sbx` installs it); a local "
                "image runs by its reference, as an unverified copy with data of its own"
            ) from None
        raise
    manifest = _manifest_from(dict(info.labels), target)
    return info, manifest


def _manifest_from(labels: dict[str, str], image: str) -> Manifest:
    """The image's manifest, or ManifestError naming the image: a hostile label (deep nesting,
    bad text, huge values) makes only this image unusable, never a traceback."""
    try:
        manifest = manifest_from_labels(labels)
    except ManifestError as exc:
        where = f"image {image}: {exc.field}" if exc.field else f"image {image}"
        raise ManifestError(where, exc.problem) from None
    except (RecursionError, MemoryError, ValueError) as exc:  # a parser that let one through
        problem = f"unreadable manifest label ({type(exc).__name__})"
        raise ManifestError(f"image {image}", problem) from None
    return manifest  # the reader refuses an id in the form of an unverified copy's


def _bare(image_id: str) -> str:
    return image_id.removeprefix(_DIGEST)
