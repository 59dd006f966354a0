"""Bundles on a real engine: export/install/list/info/uninstall round trip, hostile files refused
before the engine sees them, updates that ask again, menu entries and the .sbx MIME type."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.components import require_binary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "distribution"))

from bundle_factory import (  # noqa: E402
    Knobs,
    build_bundle,
    many_members_bundle,
    tiny_manifest,
)

from sandbox.distribution.bundle_format import HEADER_NAME  # noqa: E402
from sandbox.policy.manifest import Manifest  # noqa: E402

TINY_ID = "org.sandbox.TinyTest"
PRIVATE_TAG = "sandbox-test/demo-roundtrip:1.0.0"


@pytest.fixture(scope="session")
def demo_image(base_image: str) -> str:
    del base_image  # built FROM it
    done = subprocess.run(
        [str(ROOT / "demo" / "build.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def xdg(tmp_path: Path, docker_client_url: str) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_DIRS=f"{tmp_path / 'data'}:/usr/share",
        DOCKER_HOST=docker_client_url,
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "config").mkdir()
    yield env
    # an interrupted test must not leave the tiny app's image behind
    subprocess.run(
        ["sandbox", "uninstall", TINY_ID], env=env, capture_output=True, check=False, timeout=60
    )


def sandbox(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sandbox", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def images() -> set[str]:
    out = subprocess.run(
        ["docker", "images", "-qa", "--no-trunc"], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


def test_round_trip_of_the_demo_app(demo_image: str, xdg: dict[str, str], tmp_path: Path) -> None:
    bundle = tmp_path / "demo.sbx"
    # a private name: installing and uninstalling must not touch the shared demo tags
    subprocess.run(["docker", "tag", demo_image, PRIVATE_TAG], check=True)
    out = sandbox(xdg, "export", PRIVATE_TAG, "-o", str(bundle))
    subprocess.run(["docker", "rmi", PRIVATE_TAG], capture_output=True, check=True)
    assert out.returncode == 0, out.stderr
    assert "exporting [" in out.stderr  # the progress bar
    with tarfile.open(bundle, "r|") as tar:
        assert next(iter(tar)).name == "sandbox-bundle.json"

    out = sandbox(xdg, "install", "--yes", str(bundle))
    assert out.returncode == 0, out.stderr
    data = Path(xdg["XDG_DATA_HOME"])
    record = json.loads((data / "sandbox/installed/org.sandbox.Demo.json").read_text())
    assert record["version"] == "1.0.0"
    assert "display.x11" in record["granted"]
    entry = data / "applications/sandbox-org.sandbox.Demo.desktop"
    text = entry.read_text()
    assert "Exec=sandbox run org.sandbox.Demo %U" in text
    assert "Icon=org.sandbox.Demo" in text
    icon = data / "icons/hicolor/48x48/apps/org.sandbox.Demo.png"
    assert icon.read_bytes() == (ROOT / "demo" / "icon.png").read_bytes()
    check = subprocess.run(
        ["desktop-file-validate", str(entry), str(data / "applications/sandbox-installer.desktop")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    again = sandbox(xdg, "install", str(bundle))
    assert again.returncode == 0 and "already installed" in again.stdout

    listed = json.loads(sandbox(xdg, "list", "--json").stdout)
    assert [a["app-id"] for a in listed] == ["org.sandbox.Demo"]
    # The menu entry's command: reviewed at install, so no consent is asked (stdin is no tty).
    ran = sandbox(xdg, "run", "org.sandbox.Demo", "--", "0")
    assert ran.returncode == 0, ran.stderr
    assert "demo: run 1" in ran.stdout
    saves = data / "sandbox/apps/org.sandbox.Demo/saves"
    assert (saves / "save.json").exists()
    (saves / "slot1").write_bytes(b"x" * 5000)
    info = json.loads(sandbox(xdg, "info", "org.sandbox.Demo", "--json").stdout)
    assert info["data"][0]["name"] == "saves" and info["data"][0]["bytes"] >= 5000

    out = sandbox(xdg, "uninstall", "org.sandbox.Demo")
    assert out.returncode == 0, out.stderr
    assert (
        PRIVATE_TAG
        not in subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    assert not entry.exists() and not icon.exists()
    assert (saves / "slot1").exists()  # saves survive without --purge
    assert json.loads(sandbox(xdg, "list", "--json").stdout) == []


def test_mime_type_and_default_handler(xdg: dict[str, str], tmp_path: Path) -> None:
    require_binary("xdg-mime")
    bundle = tmp_path / "x.sbx"
    bundle.write_bytes(build_bundle(tiny_manifest()))
    assert sandbox(xdg, "install", "--yes", str(bundle)).returncode == 0
    env = dict(xdg, XDG_CURRENT_DESKTOP="GNOME")  # xdg-mime then asks gio (shared-mime-info)
    kind = subprocess.run(
        ["xdg-mime", "query", "filetype", str(bundle)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    assert kind == "application/vnd.sandbox.bundle"
    handler = subprocess.run(
        ["xdg-mime", "query", "default", kind], env=env, capture_output=True, text=True, check=False
    ).stdout.strip()
    assert handler == "sandbox-installer.desktop"
    assert sandbox(xdg, "uninstall", TINY_ID).returncode == 0


def _with(name: str, kind: bytes, link: str = "") -> Knobs:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return Knobs(extra_members=[(info, b"" if kind == tarfile.REGTYPE else None)])


def _hostile() -> dict[str, bytes]:
    m = tiny_manifest()
    good = build_bundle(m)
    webcam = tiny_manifest(extra_caps="webcam = true")
    return {
        "tar-slip": build_bundle(m, knobs=_with("../../x", tarfile.REGTYPE)),
        "symlink-escape": build_bundle(m, knobs=_with("l", tarfile.SYMTYPE, "../../../etc")),
        "hardlink-escape": build_bundle(m, knobs=_with("h", tarfile.LNKTYPE, "../etc/shadow")),
        "device": build_bundle(m, knobs=_with("d", tarfile.BLKTYPE)),
        "bad-digest": build_bundle(m, knobs=Knobs(corrupt_layer=True)),
        "truncated": good[: len(good.rstrip(b"\0")) - 10],
        "many-members": many_members_bundle(m, 100_000),
        "fewer-caps": build_bundle(webcam, knobs=Knobs(header_manifest=m)),
    }


def _layer_member(bundle: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        return next(n for n in tar.getnames() if n.endswith("/layer.tar"))


# kind -> (the member the error must name, what it must say about it)
EXPECTED: dict[str, tuple[str | None, str]] = {
    "tar-slip": ("../../x", "'..'"),
    "symlink-escape": ("l", "escapes the archive"),
    "hardlink-escape": ("h", "escapes the archive"),
    "device": ("d", "device"),
    "bad-digest": (None, "the config says"),  # the layer member, read from the bundle
    "truncated": ("manifest.json", "end of data"),
    "many-members": ("m9999", "more than 10000 members"),
    "fewer-caps": (HEADER_NAME, "asks for webcam"),
}


@pytest.mark.parametrize("kind", sorted(_hostile()))
def test_hostile_bundle_is_refused_before_the_engine(
    kind: str, xdg: dict[str, str], tmp_path: Path
) -> None:
    bundle = tmp_path / f"{kind}.sbx"
    bundle.write_bytes(_hostile()[kind])
    before_images = images()
    data, config = Path(xdg["XDG_DATA_HOME"]), Path(xdg["XDG_CONFIG_HOME"])
    before = (tree(data), tree(config))
    out = sandbox(xdg, "install", "--yes", str(bundle))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "sandbox: error:" in out.stderr
    member, problem = EXPECTED[kind]
    if member is None:
        member = _layer_member(bundle.read_bytes())
    assert f"{member}: " in out.stderr and problem in out.stderr, out.stderr
    assert images() == before_images
    assert (tree(data), tree(config)) == before


def test_update_asking_for_webcam_stops_for_consent(xdg: dict[str, str], tmp_path: Path) -> None:
    v1, v2, v3 = tmp_path / "v1.sbx", tmp_path / "v2.sbx", tmp_path / "v3.sbx"
    v1.write_bytes(build_bundle(tiny_manifest("1.0.0")))
    v2.write_bytes(
        build_bundle(
            tiny_manifest("1.1.0", "webcam = true"), knobs=Knobs(tags=("sandbox-test/tiny:1.1.0",))
        )
    )
    assert sandbox(xdg, "install", "--yes", str(v1)).returncode == 0
    data = Path(xdg["XDG_DATA_HOME"])
    record = data / "sandbox/installed" / f"{TINY_ID}.json"
    first = record.read_text()
    before_images = images()

    out = sandbox(xdg, "install", str(v2), stdin="n\n")
    assert out.returncode == 1
    assert "asks for more: webcam" in out.stdout
    assert record.read_text() == first
    assert images() == before_images

    # an update that drops a capability goes through without a question
    v12 = tiny_manifest("1.2.0")
    no_audio = dataclasses.replace(
        v12, capabilities=dataclasses.replace(v12.capabilities, audio=frozenset())
    )
    v3.write_bytes(build_bundle(no_audio, knobs=Knobs(tags=("sandbox-test/tiny:1.2.0",))))
    out = sandbox(xdg, "install", str(v3), stdin="")
    assert out.returncode == 0, out.stdout + out.stderr
    updated = json.loads(record.read_text())
    assert updated["version"] == "1.2.0"
    assert "audio.playback" not in updated["granted"]
    old_id = json.loads(first)["image-id"]
    # An install of another version is an update: the replaced version is kept for rollback
    # and its image goes with the next update, which keeps 1.2.0 instead.
    assert updated["previous"]["image-id"] == old_id
    assert old_id in images()
    v4 = tmp_path / "v4.sbx"
    v4.write_bytes(build_bundle(no_audio_13(), knobs=Knobs(tags=("sandbox-test/tiny:1.3.0",))))
    out = sandbox(xdg, "install", str(v4), stdin="")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(record.read_text())["previous"]["version"] == "1.2.0"
    assert old_id not in images()  # the old version's image went with the update


def no_audio_13() -> Manifest:
    m = tiny_manifest("1.3.0")
    return dataclasses.replace(
        m, capabilities=dataclasses.replace(m.capabilities, audio=frozenset())
    )


def test_install_edit_revokes_what_the_user_declines(xdg: dict[str, str], tmp_path: Path) -> None:
    bundle = tmp_path / "tiny.sbx"
    bundle.write_bytes(build_bundle(tiny_manifest()))
    # "n" to the first permission asked, "y" to every other one
    out = sandbox(xdg, "install", "--edit", "--yes", str(bundle), stdin="n\n" + "y\n" * 20)
    assert out.returncode == 0, out.stdout + out.stderr
    asked = re.findall(r"Allow .*? \(([a-z0-9.\-]+)\)\?", out.stderr)
    assert len(asked) >= 2, out.stderr
    declined, kept = asked[0], asked[1:]
    override = Path(xdg["XDG_CONFIG_HOME"]) / "sandbox" / "overrides" / f"{TINY_ID}.toml"
    assert override.exists()
    assert declined in override.read_text()
    record = json.loads(
        (Path(xdg["XDG_DATA_HOME"]) / "sandbox/installed" / f"{TINY_ID}.json").read_text()
    )
    assert declined not in record["granted"]
    assert set(kept) <= set(record["granted"])


def test_uninstall_purge_deletes_the_app_data(xdg: dict[str, str], tmp_path: Path) -> None:
    bundle = tmp_path / "tiny.sbx"
    bundle.write_bytes(build_bundle(tiny_manifest()))
    assert sandbox(xdg, "install", "--yes", str(bundle)).returncode == 0
    app_dir = Path(xdg["XDG_DATA_HOME"]) / "sandbox/apps" / TINY_ID
    saves = app_dir / "saves"
    saves.mkdir(parents=True)
    (saves / "slot1").write_bytes(b"x" * 100)
    out = sandbox(xdg, "uninstall", "--purge", TINY_ID)
    assert out.returncode == 0, out.stderr
    assert f"deleted data {saves}" in out.stdout
    assert not saves.exists()
    assert "kept data" not in out.stdout
    assert json.loads(sandbox(xdg, "list", "--json").stdout) == []


def test_uninstall_keeps_an_image_another_name_holds(xdg: dict[str, str], tmp_path: Path) -> None:
    """Removing by id would take the last foreign tag with it; the image must stay."""
    bundle = tmp_path / "tiny.sbx"
    bundle.write_bytes(build_bundle(tiny_manifest()))
    assert sandbox(xdg, "install", "--yes", str(bundle)).returncode == 0
    data = Path(xdg["XDG_DATA_HOME"])
    image_id = json.loads((data / "sandbox/installed" / f"{TINY_ID}.json").read_text())["image-id"]
    mine = f"sandbox-test/users-own-{os.getpid()}:1"
    subprocess.run(["docker", "tag", image_id, mine], check=True)
    try:
        out = sandbox(xdg, "uninstall", TINY_ID)
        assert out.returncode == 0, out.stderr
        assert "removed image" not in out.stdout
        kept = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}} {{.RepoTags}}", mine],
            capture_output=True,
            text=True,
            check=False,
        )
        assert kept.returncode == 0 and kept.stdout.split()[0] == image_id
        assert "sandbox-test/tiny:1.0.0" not in kept.stdout  # the app's own name went
    finally:
        subprocess.run(["docker", "rmi", mine], capture_output=True, check=False)
