"""A manifest embedded with `sandbox manifest labels` into a real image is read back exactly."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.components import require_binary
from sandbox.cli import EXIT_USAGE, main
from sandbox.cli.manifest_cmd import dockerfile_quote
from sandbox.config.manifest import read_manifest
from sandbox.policy.manifest import OCI_VERSION, dump_manifest, manifest_to_labels

REPO = Path(__file__).resolve().parents[1]
# Quotes, `$`, a backslash and non-ASCII in the name exercise the label quoting end to end.
MANIFEST = """\
manifest-version = 1
[app]
id = "com.example.Game"
name = "Ex\\"ample $HOME Game \\\\ été"
version = "1.2.0"
command = ["/opt/game/bin/game"]
vendor = "Example Studio"
[capabilities]
display = "wayland-or-x11"
audio = ["playback", "record"]
gpu = true
[capabilities.storage]
saves = "/home/app/.local/share/game"
[limits]
memory = "512M"
"""


@pytest.fixture
def engine(docker_client_url: str) -> Iterator[tuple[str, list[str]]]:
    """(url, images to remove): the test's images go away whatever happens."""
    require_binary("docker")
    made: list[str] = []
    yield docker_client_url, made
    if made:
        subprocess.run(
            ["docker", "rmi", "-f", *made],
            env={**os.environ, "DOCKER_HOST": docker_client_url},
            capture_output=True,
            check=False,
        )


def _docker(url: str, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["docker", *args],
        env={**os.environ, "DOCKER_HOST": url},
        input=stdin,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def _context(tmp_path: Path, labels_block: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "game").write_text("#!/bin/false\n", encoding="utf-8")
    (ctx / "Dockerfile").write_text(
        f"FROM scratch\nCOPY game /opt/game/bin/game\n{labels_block}\n", encoding="utf-8"
    )
    return ctx


def _check_json(url: str, ref: str, capsys: pytest.CaptureFixture[str]) -> object:
    code = main(["manifest", "check", "--json", "--docker-host", url, ref])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_dockerfile_label_instruction_round_trips(
    engine: tuple[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, made = engine
    (tmp_path / "sandbox.toml").write_text(MANIFEST, encoding="utf-8")
    expected = dump_manifest(read_manifest(tmp_path / "sandbox.toml"))
    assert main(["manifest", "labels", "--dockerfile", str(tmp_path / "sandbox.toml")]) == 0
    block = capsys.readouterr().out
    ref = f"sandbox-test/manifest-dockerfile:{secrets.token_hex(4)}"
    made.append(ref)
    _docker(url, "build", "-q", "-t", ref, str(_context(tmp_path, block)))
    assert _check_json(url, ref, capsys) == expected


def test_build_label_flags_round_trip_and_tampering_is_refused(
    engine: tuple[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, made = engine
    (tmp_path / "sandbox.toml").write_text(MANIFEST, encoding="utf-8")
    manifest = read_manifest(tmp_path / "sandbox.toml")
    assert main(["manifest", "labels", str(tmp_path / "sandbox.toml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(manifest_to_labels(manifest))
    good = f"sandbox-test/manifest-flags:{secrets.token_hex(4)}"
    made.append(good)
    flags = [f"--label={line}" for line in lines]
    _docker(url, "build", "-q", "-t", good, *flags, str(_context(tmp_path, "")))
    assert _check_json(url, good, capsys) == dump_manifest(manifest)

    # docker import with --change: the other way to label a rootfs; here with a lying version.
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(tmp_path / "ctx" / "game", arcname="opt/game/bin/game")
    bad = f"sandbox-test/manifest-tampered:{secrets.token_hex(4)}"
    made.append(bad)
    # --change takes Dockerfile syntax, so the values need the same quoting as --dockerfile.
    changes = [
        f"--change=LABEL {key}={dockerfile_quote(value)}"
        for key, value in manifest_to_labels(manifest).items()
        if key != OCI_VERSION
    ]
    _docker(url, "import", *changes, f'--change=LABEL {OCI_VERSION}="6.6.6"', str(tar), bad)
    assert main(["manifest", "check", "--docker-host", url, bad]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"image {bad}: {OCI_VERSION}: label says '6.6.6' but the manifest says '1.2.0'" in err


def test_image_without_manifest_and_missing_image_exit_2(
    engine: tuple[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, made = engine
    plain = f"sandbox-test/manifest-none:{secrets.token_hex(4)}"
    made.append(plain)
    _docker(url, "build", "-q", "-t", plain, str(_context(tmp_path, "LABEL maintainer=me")))
    assert main(["manifest", "check", "--docker-host", url, plain]) == EXIT_USAGE
    assert "image has no sandbox manifest" in capsys.readouterr().err
    ghost = f"sandbox-test/manifest-ghost:{secrets.token_hex(4)}"
    assert main(["manifest", "check", "--docker-host", url, ghost]) == EXIT_USAGE
    assert f"image {ghost} not found" in capsys.readouterr().err
