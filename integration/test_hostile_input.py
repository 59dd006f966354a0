"""Hostile input through the real CLI and engine: nested TOML, a nested .sbx header or
manifest.json, an image whose manifest label is nested JSON. Each is exit 2 with one clean
line naming the file or label, no traceback, nothing installed, loaded or written; and one bad
image makes only that image unusable."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.test_distribution import sandbox, tree, xdg
from sandbox.distribution.bundle_format import HEADER_NAME
from sandbox.policy.manifest import LABEL_MANIFEST, LABEL_MANIFEST_VERSION, manifest_to_labels
from tests.distribution.bundle_factory import build_bundle, manifest_text, tiny_manifest

__all__ = ["xdg"]  # the fixture, shared with test_distribution

NEST = 20_000  # 40 KB of brackets: RecursionError in json/tomllib before the hardening


def _nested_json() -> bytes:
    return b"[" * NEST + b"]" * NEST


def _one_clean_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()  # a progress bar may come first
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == lines[-1:] and errors[0].startswith("sandbox: error: "), out.stderr
    return errors[0]


def _replace_member(bundle: bytes, name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle)) as src,
        tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):
        for info in src:
            body = src.extractfile(info).read() if info.isfile() else b""  # type: ignore[union-attr]
            if info.name == name:
                body = data
            info.size = len(body)
            out.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@pytest.mark.parametrize("command", ["manifest check", "plan"])
def test_nested_toml_manifest_is_exit_2_naming_the_problem(
    command: str, xdg: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "sandbox.toml"
    path.write_text(manifest_text() + "[limits]\nx = " + "[" * NEST + "]" * NEST + "\n")
    assert path.stat().st_size < 64 * 1024
    before = (tree(Path(xdg["XDG_DATA_HOME"])), tree(Path(xdg["XDG_CONFIG_HOME"])))
    line = _one_clean_line(sandbox(xdg, *command.split(), str(path)))
    assert "nested more than 32 levels deep" in line
    assert (tree(Path(xdg["XDG_DATA_HOME"])), tree(Path(xdg["XDG_CONFIG_HOME"]))) == before


def _image_id(bundle: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        entry = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
    return "sha256:" + entry["Config"].removesuffix(".json")


def _engine_has(image_id: str) -> bool:
    done = subprocess.run(
        ["docker", "image", "inspect", image_id], capture_output=True, timeout=60, check=False
    )
    return done.returncode == 0


@pytest.mark.parametrize("member", [HEADER_NAME, "manifest.json"])
def test_install_of_a_bundle_with_a_nested_member_changes_nothing(
    member: str, xdg: dict[str, str], tmp_path: Path
) -> None:
    # A version of its own: the image id is this test's alone on the shared engine.
    good = build_bundle(tiny_manifest(version=f"1.0.{uuid.uuid4().int % 10**9}"))
    image_id = _image_id(good)
    bundle = tmp_path / "nested.sbx"
    bundle.write_bytes(_replace_member(good, member, _nested_json()))
    data, config = Path(xdg["XDG_DATA_HOME"]), Path(xdg["XDG_CONFIG_HOME"])
    before = (tree(data), tree(config))
    assert not _engine_has(image_id)
    line = _one_clean_line(sandbox(xdg, "install", "--yes", str(bundle)))
    assert f"{member}: " in line and "nested more than 32 levels deep" in line, line
    assert not _engine_has(image_id)
    assert (tree(data), tree(config)) == before


@pytest.fixture
def labelled_images(tools_image: str, docker_client_url: str) -> Iterator[tuple[str, str]]:
    """(hostile, good): an image whose manifest label is 40 KB of nested JSON, and a good one."""
    tag = f"sandbox-test/hostile-input-{uuid.uuid4().hex[:8]}"
    hostile, good = f"{tag}:nested", f"{tag}:good"
    good_labels = manifest_to_labels(tiny_manifest())
    bad_labels = {LABEL_MANIFEST: _nested_json().decode(), LABEL_MANIFEST_VERSION: "1"}
    env = {"DOCKER_HOST": docker_client_url}
    try:
        for name, labels in ((hostile, bad_labels), (good, good_labels)):
            args = [f"--label={k}={v}" for k, v in labels.items()]
            done = subprocess.run(
                ["docker", "build", "-q", "-t", name, *args, "-"],
                input=f"FROM {tools_image}\n",
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                env={**os.environ, **env},
            )
            assert done.returncode == 0, done.stderr
        yield hostile, good
    finally:
        subprocess.run(
            ["docker", "rmi", "-f", hostile, good],
            capture_output=True,
            check=False,
            timeout=60,
            env={**os.environ, **env},
        )


def test_image_with_a_nested_label_is_exit_2_and_others_still_work(
    labelled_images: tuple[str, str], xdg: dict[str, str]
) -> None:
    hostile, good = labelled_images
    for command in ("manifest check", "plan"):
        line = _one_clean_line(sandbox(xdg, *command.split(), hostile))
        assert f"image {hostile}: {LABEL_MANIFEST}: nested more than 32" in line, line
    ok = sandbox(xdg, "manifest", "check", good)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ok: org.sandbox.TinyTest 1.0.0"
