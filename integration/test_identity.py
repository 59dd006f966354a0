"""An app id belongs to its installed app: impostor images (the victim's manifest labels, another
image) get none of its data, cgroup or install record; a hostile label breaks only its image."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import sandbox
from integration.components import wait_until
from integration.test_runtime import _build as build_app
from integration.test_runtime import _manifest as app_manifest
from sandbox.engine.adapter import DockerAdapter
from sandbox.host.names import LABEL_APP_ID, unverified_app_id
from sandbox.policy.manifest import LABEL_MANIFEST, LABEL_MANIFEST_VERSION
from sandbox.runtime import gc

TAG = f"sandbox-test/ident-{os.getpid()}"
VICTIM = f"org.sandboxtest.Victim{os.getpid()}"
BYSTANDER = f"org.sandboxtest.Bystander{os.getpid()}"
SECRET = "victim-secret-save"


def _sandbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def _build(base: str, app_id: str, tag: str, tmp: Path) -> str:
    """An image of `app_id`'s manifest (storage.saves at /data/saves) on top of `base`."""
    return build_app("docker", base, tag, app_manifest(app_id, '["/bin/sh", "-c"]'), tmp)


def _load_with_labels(tag: str, labels: bytes) -> str:
    """`docker load` an image (one empty layer) whose config's Labels object is `labels`, raw
    JSON text: what no Dockerfile can say (bad UTF-8, values over its 64 KiB line limit)."""
    layer = b"\0" * 10240
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = (
        b'{"architecture":"amd64","os":"linux","config":{"Labels":' + labels + b"},"
        b'"rootfs":{"type":"layers","diff_ids":["' + diff_id.encode() + b'"]}}'
    )
    manifest = json.dumps([{"Config": "config.json", "RepoTags": [tag], "Layers": ["l.tar"]}])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("config.json", config), ("l.tar", layer),
                           ("manifest.json", manifest.encode())):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "load", "-q"], input=buf.getvalue(), check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return tag


def _image_id(ref: str) -> str:
    return DockerAdapter.from_env().image_config(ref).id


@pytest.fixture(scope="module")
def images(
    docker_client_url: str, tools_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    os.environ["DOCKER_HOST"] = docker_client_url
    tmp = tmp_path_factory.mktemp("identity")
    nested = b"[" * 20_000 + b"]" * 20_000  # ~40 KB: RecursionError in a naive parser
    built: dict[str, str] = {}
    try:
        built["victim"] = _build(tools_image, VICTIM, f"{TAG}-victim:1", tmp)
        # the victim's very files and labels, one build step on: another image, the same id
        built["impostor"] = _build(built["victim"], VICTIM, f"{TAG}-impostor:1", tmp)
        built["impostor2"] = _build(built["impostor"], VICTIM, f"{TAG}-impostor:2", tmp)
        built["bystander"] = _build(tools_image, BYSTANDER, f"{TAG}-bystander:1", tmp)
        same_id = [built[k] for k in ("victim", "impostor", "impostor2")]
        assert len({_image_id(ref) for ref in same_id}) == 3, "three images, one app id"
        # the version label is right, so the manifest label itself is parsed
        label = b'{"%s":"1","%s":' % (LABEL_MANIFEST_VERSION.encode(), LABEL_MANIFEST.encode())
        built["nested"] = _load_with_labels(f"{TAG}-nested:1", label + b'"' + nested + b'"}')
        bad_text = b'"{\\"manifest-version\\": 1, \\"app\\": {\\"id\\": \\"org.x.\xff\xfe\\"}}"'
        built["bad-utf8"] = _load_with_labels(f"{TAG}-badutf8:1", label + bad_text + b"}")
        huge = b'"' + b"x" * (4 << 20) + b'"'  # the engine keeps it; the parser must not choke
        built["huge"] = _load_with_labels(f"{TAG}-huge:1", label + huge + b"}")
        for installable in ("victim", "bystander"):
            ref = built[installable]
            subprocess.run(["docker", "tag", ref, f"{ref}-keep"], check=True)
            built[f"{installable}-keep"] = f"{ref}-keep"
        yield built
    finally:
        for ref in built.values():
            subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


@pytest.fixture
def env(tmp_path: Path, docker_client_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("DOCKER_HOST", docker_client_url)
    return dict(os.environ)


def _install(env: dict[str, str], image: str, tmp: Path, app_id: str) -> Path:
    # uninstall untags the image's bundle name; the -keep tag keeps the image for the next test
    subprocess.run(["docker", "tag", f"{image}-keep", image], check=True, capture_output=True)
    bundle = tmp / f"{app_id}.sbx"
    done = _sandbox(env, "export", image, "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    done = _sandbox(env, "install", "--yes", str(bundle))
    assert done.returncode == 0, done.stdout + done.stderr
    record = Path(env["XDG_DATA_HOME"]) / "sandbox" / "installed" / f"{app_id}.json"
    assert json.loads(record.read_text())["image-id"] == _image_id(image)
    return record


@pytest.fixture
def victim(env: dict[str, str], images: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """The victim installed, with a save file written by its own (installed) image."""
    record = _install(env, images["victim"], tmp_path, VICTIM)
    try:
        done = _sandbox(env, "run", "--yes", VICTIM, "--", f"echo {SECRET} > /data/saves/slot")
        assert done.returncode == 0, done.stderr
        yield record
    finally:
        _sandbox(env, "uninstall", VICTIM)  # keeps the saves; untags the image


def _saves(env: dict[str, str], identity: str) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "sandbox" / "apps" / identity / "saves"


def _containers(identity: str) -> tuple[object, ...]:
    return DockerAdapter.from_env().containers_with_label(LABEL_APP_ID, identity)


def test_an_impostor_of_an_installed_app_is_refused_before_anything_runs(
    env: dict[str, str], images: dict[str, str], victim: Path
) -> None:
    before = victim.read_bytes()
    steal = "cat /data/saves/slot; cat /proc/self/cgroup"
    done = _sandbox(env, "run", "--yes", images["impostor"], "--", steal)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"names {VICTIM}, which is installed from another image" in done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stdout + done.stderr
    assert not _containers(VICTIM) and victim.read_bytes() == before
    installed = Path(env["XDG_DATA_HOME"]) / "sandbox" / "installed"
    assert sorted(p.name for p in installed.iterdir()) == [f"{VICTIM}.json"]
    # the installed app's own image, by reference, is that app: it reads its save
    own = _sandbox(env, "run", "--yes", images["victim"], "--", "cat /data/saves/slot")
    assert (own.returncode, own.stdout) == (0, f"{SECRET}\n"), own.stderr


def _cgroup_of_running(image: str, identity: str) -> str:
    """/proc/PID/cgroup (read on the host) of the process the image runs as, while it runs."""
    prepared = sandbox.plan(image)
    assert prepared.manifest.app.id == identity
    session = sandbox.launch(prepared, args=("sleep 30",), stdio=None)
    try:
        pids: tuple[int, ...] = ()

        def running() -> bool:
            nonlocal pids
            pids = gc.container_pids(identity, session.container_id)
            return bool(pids)

        wait_until(running, interval=0.1)
        ident = sandbox.app_for_pid(pids[0])
        assert ident is not None and ident.app_id == identity
        return Path(f"/proc/{pids[0]}/cgroup").read_text()
    finally:
        session.stop(timeout_s=1)
        session.wait()


def test_an_impostor_of_an_app_that_is_not_installed_runs_apart(
    env: dict[str, str], images: dict[str, str], victim: Path
) -> None:
    assert _sandbox(env, "uninstall", VICTIM).returncode == 0  # its saves stay on the disk
    assert (_saves(env, VICTIM) / "slot").read_text() == f"{SECRET}\n"
    impostor = unverified_app_id(VICTIM, _image_id(images["impostor"]))
    attack = (
        "cat /data/saves/slot 2>&1; ls -A /data/saves; echo mine > /data/saves/impostor; "
        "ls /data/../.. >/dev/null; echo done"
    )
    done = _sandbox(env, "run", "--yes", images["impostor"], "--", attack)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout and done.stdout.endswith("done\n")
    assert f"runs as an unverified copy of {VICTIM}; its data is separate" in done.stderr
    assert not (_saves(env, VICTIM) / "impostor").exists()
    assert (_saves(env, impostor) / "impostor").read_text() == "mine\n"
    # the same image again keeps its own saves (a developer's test runs persist) ...
    again = _sandbox(env, "run", "--yes", images["impostor"], "--", "cat /data/saves/impostor")
    assert (again.returncode, again.stdout) == (0, "mine\n"), again.stderr
    # ... and another image with the same id shares nothing with either
    other = _sandbox(env, "run", "--yes", images["impostor2"], "--", "ls -A /data/saves")
    assert (other.returncode, other.stdout) == (0, ""), other.stderr
    cgroup = _cgroup_of_running(images["impostor"], impostor)
    assert f"/sandbox/{impostor}/" in cgroup and f"/sandbox/{VICTIM}/" not in cgroup, cgroup
    installed = Path(env["XDG_DATA_HOME"]) / "sandbox" / "installed"
    assert not list(installed.glob("*.json")), "no install record for anyone"


def test_run_app_id_never_picks_an_uninstalled_image(
    env: dict[str, str], images: dict[str, str]
) -> None:
    del images  # impostor images claiming VICTIM exist locally
    done = _sandbox(env, "run", "--yes", VICTIM, "--", "echo ran")
    assert done.returncode == 2 and "ran" not in done.stdout
    assert f"{VICTIM} is not installed" in done.stderr and "Traceback" not in done.stderr
    assert not _containers(VICTIM)


@pytest.mark.parametrize("bad", ["nested", "bad-utf8", "huge"])
def test_a_hostile_label_makes_only_its_own_image_unusable(
    env: dict[str, str], images: dict[str, str], tmp_path: Path, bad: str
) -> None:
    _install(env, images["bystander"], tmp_path, BYSTANDER)
    try:
        done = _sandbox(env, "run", "--yes", images[bad], "--", "true")
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"sandbox: error: image {images[bad]}"), done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr) < 2000
        assert "label is missing" not in done.stderr  # the hostile label itself was read
        ok = _sandbox(env, "run", "--yes", BYSTANDER, "--", "echo alive")
        assert (ok.returncode, ok.stdout) == (0, "alive\n"), ok.stderr
        uninstalled = _sandbox(env, "run", "--yes", images["impostor"], "--", "echo alive")
        assert (uninstalled.returncode, uninstalled.stdout) == (0, "alive\n"), uninstalled.stderr
    finally:
        _sandbox(env, "uninstall", BYSTANDER)
