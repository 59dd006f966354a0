"""Unit tests of the resolve step: APP-ID -> install record, else newest image, else IMAGE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import pytest

from sandbox.distribution.installed import InstalledApp, consented
from sandbox.distribution.resolve import Resolved, resolve_image
from sandbox.engine.adapter import DockerAdapter, ImageConfig, ImageInfo
from sandbox.errors import ManifestError
from sandbox.policy.manifest import Manifest, manifest_to_labels
from sandbox.policy.vocabulary import DisplayRequest, Permission, permission_sort_key
from sandbox.runtime.prepare import ResolvedImage
from tests.distribution.bundle_factory import tiny_manifest
from tests.policy.engine_support import make_plan, manifest, x11_host

APP = "org.sandbox.TinyTest"  # the id tiny_manifest() declares


class FakeEngine:
    """The two image queries resolve makes, over a fixed set of local images."""

    def __init__(self, images: Mapping[str, ImageInfo]) -> None:
        self.images = images

    def image_config(self, ref: str) -> ImageConfig:
        return ImageConfig(ref, self.images[ref].labels, ("/vol",))

    def images_with_label(self, key: str) -> tuple[ImageInfo, ...]:
        return tuple(i for i in self.images.values() if key in i.labels)


def _image(
    ref: str, manifest: Manifest | None, created: int, tags: tuple[str, ...] = ()
) -> ImageInfo:
    labels = manifest_to_labels(manifest) if manifest is not None else {}
    return ImageInfo(ref, tags, labels, created)


def _engine(*images: ImageInfo) -> DockerAdapter:
    return cast(DockerAdapter, FakeEngine({i.id: i for i in images}))


def _installed(
    image_id: str, m: Manifest, granted: frozenset[Permission] = frozenset()
) -> InstalledApp:
    return InstalledApp(
        app_id=APP, version="1.0.0", image_id=image_id, tags=(), manifest=m, granted=granted,
        installed_at="2024-01-01T00:00:00Z", bundle_sha256="0" * 64,
    )  # fmt: skip


def test_an_app_id_runs_its_newest_labelled_image() -> None:
    old, new = tiny_manifest("1.0.0"), tiny_manifest("2.0.0")
    engine = _engine(_image("sha256:old", old, 10, ("tiny:1",)), _image("sha256:new", new, 20))
    assert resolve_image(engine, APP) == ("sha256:new", new, None)  # launch reads the config


def test_the_install_record_wins_over_newer_images() -> None:
    old, new = tiny_manifest("1.0.0"), tiny_manifest("2.0.0")
    engine = _engine(_image("sha256:old", old, 10), _image("sha256:new", new, 20))
    image, got, config = resolve_image(engine, APP, _installed("sha256:old", old))
    assert (image, got) == ("sha256:old", old)
    assert config is not None and (config.id, config.volumes) == ("sha256:old", ("/vol",))


def test_anything_else_is_an_image_whose_labels_must_hold_a_manifest() -> None:
    m = tiny_manifest()
    engine = _engine(_image("tiny:1", m, 10), _image("plain:1", None, 10))
    image, got, config = resolve_image(engine, "tiny:1")
    assert (image, got) == ("tiny:1", m)
    assert config is not None and config.volumes == ("/vol",)  # from the same inspect
    with pytest.raises(ManifestError, match=r"^image plain:1"):
        resolve_image(engine, "plain:1")


def test_consent_is_asked_for_all_without_a_record_and_for_the_growth_with_one() -> None:
    m = manifest(DisplayRequest.X11, network=True, app_id=APP)
    plan = make_plan(m, x11_host())
    image = ResolvedImage("sha256:x", m, "unix:///run/docker.sock")
    assert Resolved(image).not_consented(plan) is None  # no record: review the whole plan
    everything = Resolved(image, _installed("sha256:x", m, consented(plan)))
    assert everything.not_consented(plan) == ()
    nothing = Resolved(image, _installed("sha256:x", m, frozenset()))
    assert nothing.not_consented(plan) == tuple(sorted(consented(plan), key=permission_sort_key))
