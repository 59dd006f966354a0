"""Unit tests of the resolve step: an app id belongs to its installed app; a bad image is only
its own problem."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import cast

import pytest

from sandbox.distribution.installed import InstalledApp, consented
from sandbox.distribution.resolve import Records, Resolved, is_installed_image, resolve_on
from sandbox.engine.adapter import DockerAdapter, ImageConfig, ImageInfo
from sandbox.errors import IdentityError, LaunchError, ManifestError
from sandbox.host import names
from sandbox.policy.manifest import LABEL_MANIFEST, Manifest, manifest_to_labels
from sandbox.policy.vocabulary import DisplayRequest, Permission, permission_sort_key
from sandbox.runtime.prepare import Prepared, ResolvedImage, identity_note, review
from tests.distribution.bundle_factory import tiny_manifest
from tests.policy.engine_support import make_plan, manifest, x11_host

APP = "org.sandbox.TinyTest"  # the id tiny_manifest() declares
OLD, NEW, OTHER = ("sha256:" + c * 64 for c in "abc")


class FakeEngine:
    """The image query resolve makes, over a fixed set of local images (by id and by tag)."""

    url = "unix:///fake.sock"

    def __init__(self, images: Mapping[str, ImageInfo]) -> None:
        self.images = dict(images)
        for i in images.values():
            self.images.update({t: i for t in i.tags})

    def image(self, ref: str) -> ImageInfo:
        if ref not in self.images:
            raise LaunchError(f"image {ref} not found")
        return self.images[ref]

    def image_labels(self, ref: str) -> dict[str, str]:
        return dict(self.image(ref).labels)

    def image_config(self, ref: str) -> ImageConfig:
        info = self.image(ref)
        return ImageConfig(info.id, info.labels, ("/vol",))

    def images_with_label(self, key: str) -> tuple[ImageInfo, ...]:
        raise AssertionError("resolve must never scan every labelled image")


class FakeRecords(Records):
    def __init__(self, *apps: InstalledApp) -> None:
        super().__init__(None)
        self.apps = {a.app_id: a for a in apps}

    def get(self, app_id: str) -> InstalledApp | None:
        return self.apps.get(app_id)


def _image(
    ref: str, manifest: Manifest | None, created: int = 0, tags: tuple[str, ...] = ()
) -> ImageInfo:
    labels = manifest_to_labels(manifest) if manifest is not None else {}
    return ImageInfo(ref, tags, labels, created)


def _engine(*images: ImageInfo) -> DockerAdapter:
    return cast(DockerAdapter, FakeEngine({i.id: i for i in images}))


def _installed(
    image_id: str, m: Manifest, granted: frozenset[Permission] = frozenset()
) -> InstalledApp:
    return InstalledApp(
        app_id=m.app.id, version="1.0.0", image_id=image_id, tags=(), manifest=m,
        granted=granted, installed_at="2024-01-01T00:00:00Z", bundle_sha256="0" * 64,
    )  # fmt: skip


def test_an_app_id_runs_its_installed_image_never_a_newer_local_one() -> None:
    old, new = tiny_manifest("1.0.0"), tiny_manifest("2.0.0")
    engine = _engine(_image(OLD, old, 10), _image(NEW, new, 20, ("tiny:2",)))
    record = _installed(OLD, old)
    got = resolve_on(engine, APP, FakeRecords(record))
    assert (got.image.image, got.image.manifest, got.installed) == (OLD, old, record)
    assert got.image.unverified_of is None


def test_an_app_id_that_is_not_installed_is_refused_though_images_claim_it() -> None:
    engine = _engine(_image(NEW, tiny_manifest(), 20, ("tiny:2",)))
    with pytest.raises(IdentityError, match=rf"^{APP} is not installed"):
        resolve_on(engine, APP, FakeRecords())


def test_an_installed_apps_own_image_by_reference_runs_as_that_app() -> None:
    m = tiny_manifest()
    record = _installed(OLD, m)
    got = resolve_on(_engine(_image(OLD, m, tags=("tiny:1",))), "tiny:1", FakeRecords(record))
    assert (got.image.image, got.image.manifest.app.id, got.installed) == (OLD, APP, record)
    assert got.image.unverified_of is None


def test_an_impostor_of_an_installed_app_is_refused() -> None:
    m = tiny_manifest()
    engine = _engine(_image(OLD, m), _image(NEW, tiny_manifest("9.0.0"), tags=("evil:1",)))
    with pytest.raises(IdentityError, match=rf"image evil:1 names {APP}, which is installed from"):
        resolve_on(engine, "evil:1", FakeRecords(_installed(OLD, m)))


def test_the_hook_compares_image_ids_with_or_without_the_digest_prefix() -> None:
    record = _installed(OLD, tiny_manifest())
    assert is_installed_image(record, OLD) and is_installed_image(record, OLD[7:])
    assert not is_installed_image(record, NEW)


def test_an_uninstalled_image_runs_as_a_throwaway_identity_stable_per_image() -> None:
    m = tiny_manifest()
    engine = _engine(_image(NEW, m, tags=("tiny:1",)), _image(OTHER, m, tags=("tiny:2",)))
    first = resolve_on(engine, "tiny:1", FakeRecords())
    again = resolve_on(engine, NEW, FakeRecords())
    other = resolve_on(engine, "tiny:2", FakeRecords())
    assert first.installed is None and first.image.image == NEW  # the id: no tag can move
    assert first.image.manifest.app.id == f"{APP}-unverified-{'b' * 16}"
    assert again.image.manifest == first.image.manifest  # same image, same saves
    assert other.image.manifest.app.id != first.image.manifest.app.id
    assert first.image.unverified_of == APP
    assert dataclasses.replace(first.image.manifest.app, id=APP) == m.app  # nothing else


def test_an_image_may_not_claim_the_form_of_a_throwaway_identity() -> None:
    claimed = names.unverified_app_id(APP, NEW)
    m = tiny_manifest()
    m = dataclasses.replace(m, app=dataclasses.replace(m.app, id=claimed))
    engine = _engine(_image(OTHER, m, tags=("sly:1",)))
    with pytest.raises(ManifestError, match=r"^image sly:1: app.id: .*unverified copy"):
        resolve_on(engine, "sly:1", FakeRecords())


def test_an_image_without_a_manifest_is_named_in_the_error() -> None:
    engine = _engine(_image("plain:1", None))
    with pytest.raises(ManifestError, match=r"^image plain:1"):
        resolve_on(engine, "plain:1", FakeRecords())


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = {
    "deep JSON": _nested(20_000),  # ~40 KB
    "deep JSON in an object": '{"app": ' * 5_000 + "1" + "}" * 5_000,
    "replacement characters": "\ufffd\udcff\x00" * 100,
    "huge": json.dumps({"app": {"id": APP, "name": "x" * 10_000_000}}),
}


@pytest.mark.parametrize("label", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_label_makes_only_its_own_image_unusable(label: str) -> None:
    good = tiny_manifest()
    engine = _engine(
        ImageInfo("sha256:" + "d" * 64, ("bad:1",), {LABEL_MANIFEST: label}, 30),
        _image(OLD, good, 10),
    )
    with pytest.raises(ManifestError, match=r"^image bad:1"):
        resolve_on(engine, "bad:1", FakeRecords())
    ok = resolve_on(engine, APP, FakeRecords(_installed(OLD, good)))
    assert ok.image.manifest == good


def test_the_review_of_an_unverified_copy_says_so() -> None:
    m = tiny_manifest()
    got = resolve_on(_engine(_image(NEW, m, tags=("tiny:1",))), "tiny:1", FakeRecords())
    plan = make_plan(got.image.manifest, x11_host())
    prepared = Prepared(
        NEW, got.image.manifest, x11_host(), plan, (), "unix:///x", unverified_of=APP
    )
    text = review(prepared)
    assert f"runs as an unverified copy of {APP}; its data is separate" in text.splitlines()[1]
    assert got.image.manifest.app.id in text
    installed = dataclasses.replace(prepared, unverified_of=None)
    assert identity_note(installed) is None and "unverified copy" not in review(installed)


def test_consent_is_asked_for_all_without_a_record_and_for_the_growth_with_one() -> None:
    m = manifest(DisplayRequest.X11, network=True, app_id=APP)
    plan = make_plan(m, x11_host())
    image = ResolvedImage("sha256:x", m, "unix:///run/docker.sock")
    assert Resolved(image).not_consented(plan) is None  # no record: review the whole plan
    everything = Resolved(image, _installed("sha256:x", m, consented(plan)))
    assert everything.not_consented(plan) == ()
    nothing = Resolved(image, _installed("sha256:x", m, frozenset()))
    assert nothing.not_consented(plan) == tuple(sorted(consented(plan), key=permission_sort_key))


def test_an_absent_engine_is_not_reported_as_an_app_that_is_not_installed() -> None:
    from sandbox.errors import EngineUnavailableError

    class Gone(FakeEngine):
        def image(self, ref: str) -> ImageInfo:
            raise EngineUnavailableError("no engine at unix:///fake.sock")

    with pytest.raises(EngineUnavailableError):
        resolve_on(cast(DockerAdapter, Gone({})), APP, FakeRecords())


def test_an_install_record_whose_image_names_another_app_is_refused() -> None:
    from sandbox.errors import BundleError

    other = tiny_manifest()
    other = dataclasses.replace(other, app=dataclasses.replace(other.app, id="org.other.App"))
    engine = _engine(_image(OLD, other))
    with pytest.raises(BundleError, match=r"names org\.other\.App"):
        resolve_on(engine, APP, FakeRecords(_installed(OLD, tiny_manifest())))
