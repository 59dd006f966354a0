"""Updates on a real engine: delta files hold exactly the changed layers, update/rollback keep
saves, rebase onto a patched base keeps the app layers, thin files need their base, and a
running instance's image is never replaced."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = "org.sandbox.Demo"
# Unique per run: parallel runs (or a benchmark importing this) must not move each other's tags.
PREFIX = f"sandbox-test/upd-{os.getpid()}-{secrets.token_hex(3)}"


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=600
    ).stdout.strip()


def inspect(ref: str) -> dict[str, object]:
    return json.loads(docker("image", "inspect", ref))[0]  # type: ignore[no-any-return]


def diff_ids(ref: str) -> list[str]:
    return list(inspect(ref)["RootFS"]["Layers"])  # type: ignore[index]


def build(ctx: Path, tag: str) -> None:
    done = subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(ctx)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr


SMOKE_PARSE = (
    'smoke = ["/usr/bin/python3", "-c", "import ast; ast.parse(open(\'/opt/demo/demo_app.py\')'
    '.read())"]'
)


def demo_context(
    tmp: Path,
    version: str,
    base: str,
    extra: str = "",
    *,
    smoke: str = SMOKE_PARSE,
    capabilities: str = "",
) -> Path:
    """The demo app's build context; `capabilities` are TOML lines added to its table."""
    ctx = tmp / f"ctx-{version}"
    ctx.mkdir(parents=True)
    shutil.copy(ROOT / "demo" / "icon.png", ctx)
    # The run's own line: images of parallel runs must not share ids either (an instance or an
    # uninstall in one run would otherwise reach the other's image).
    app = (ROOT / "demo" / "demo_app.py").read_text() + f"\n# build {PREFIX}\n"
    (ctx / "demo_app.py").write_text(app + extra)
    toml = (ROOT / "demo" / "sandbox.toml").read_text()
    toml = toml.replace('version = "1.0.0"', f'version = "{version}"')
    # the smoke check must not need a display: python starts and parses the app
    toml = toml.replace("categories =", f"{smoke}\ncategories =")
    toml = toml.replace("[capabilities]\n", f"[capabilities]\n{capabilities}")
    (ctx / "sandbox.toml").write_text(toml)
    labels = subprocess.run(
        ["sandbox", "manifest", "labels", "--dockerfile", str(ctx / "sandbox.toml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    dockerfile = (ROOT / "demo" / "Dockerfile.in").read_text()
    dockerfile = dockerfile.replace("FROM sandbox-test/base:bookworm", f"FROM {base}")
    (ctx / "Dockerfile").write_text(dockerfile + labels)
    return ctx


@pytest.fixture
def versions(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    # Per test (the build cache makes it quick): installs and uninstalls move these names.
    tmp = tmp_path_factory.mktemp("updates")
    tags = {
        "v1": f"{PREFIX}-demo:1.0.0",
        "v2": f"{PREFIX}-demo:2.0.0",
        "patched": f"{PREFIX}-base:patched",
        "unrelated": f"{PREFIX}-unrelated:1",
    }
    build(demo_context(tmp, "1.0.0", base_image), tags["v1"])
    build(demo_context(tmp, "2.0.0", base_image, "\n# version 2\n"), tags["v2"])
    patched = tmp / "patched"
    patched.mkdir()
    (patched / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo patched > /etc/sandbox-patched-marker\n"
    )
    build(patched, tags["patched"])
    unrelated = tmp / "unrelated"
    unrelated.mkdir()
    (unrelated / "f").write_text("x")
    (unrelated / "Dockerfile").write_text("FROM scratch\nCOPY f /f\n")
    build(unrelated, tags["unrelated"])
    yield tags
    for tag in tags.values():
        docker("rmi", tag, check=False)


@pytest.fixture
def env(tmp_path: Path, docker_client_url: str) -> Iterator[dict[str, str]]:
    e = dict(os.environ)
    e.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_DIRS=f"{tmp_path / 'data'}:/usr/share",
        DOCKER_HOST=docker_client_url,
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "config").mkdir()
    yield e
    record = tmp_path / "data" / "sandbox" / "installed" / f"{APP}.json"
    if record.exists():
        doc = json.loads(record.read_text())
        rebased = [t for t in doc["tags"] if "-rebase-" in t]
        prev = doc.get("previous") or {}
        rebased += [t for t in prev.get("tags", []) if "-rebase-" in t]
        for tag in rebased:
            docker("rmi", tag, check=False)


def sandbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sandbox", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def record(env: dict[str, str]) -> dict[str, object]:
    path = Path(env["XDG_DATA_HOME"]) / "sandbox" / "installed" / f"{APP}.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def layer_digests(bundle: Path) -> set[str]:
    import hashlib

    out = set()
    with tarfile.open(bundle, "r|") as tar:
        for m in tar:
            if m.isreg() and m.name.endswith("layer.tar"):
                f = tar.extractfile(m)
                assert f is not None
                out.add("sha256:" + hashlib.sha256(f.read()).hexdigest())
    return out


def images() -> set[str]:
    return set(docker("images", "-qa", "--no-trunc").split())


def test_delta_update_rollback_and_saves(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path, base_image: str
) -> None:
    v1, v2 = versions["v1"], versions["v2"]
    full1, full2, delta = tmp_path / "v1.sbx", tmp_path / "v2.sbx", tmp_path / "v2-delta.sbx"
    assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
    assert sandbox(env, "export", v2, "-o", str(full2)).returncode == 0
    out = sandbox(env, "export", v2, "--delta-from", v1, "-o", str(delta))
    assert out.returncode == 0, out.stderr
    changed = set(diff_ids(v2)) - set(diff_ids(v1))
    assert changed and layer_digests(delta) == changed
    assert not set(diff_ids(base_image)) & layer_digests(delta)
    base_size = int(str(inspect(base_image)["Size"]))  # bytes of the unpacked layers
    assert full2.stat().st_size - delta.stat().st_size >= base_size

    image_v2 = inspect(v2)["Id"]
    docker("tag", v2, f"{PREFIX}-keep:2")  # keep the layers: the test removes the v2 tag below
    docker("rmi", v2)
    try:
        assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
        saves = Path(env["XDG_DATA_HOME"]) / "sandbox/apps" / APP / "saves"
        saves.mkdir(parents=True)
        (saves / "save.json").write_text('{"runs": 7}')
        docker("rmi", f"{PREFIX}-keep:2")
        assert image_v2 not in images()
        out = sandbox(env, "update", APP, str(delta))
        assert out.returncode == 0, out.stdout + out.stderr
        rec = record(env)
        assert rec["version"] == "2.0.0" and rec["image-id"] == image_v2
        assert rec["previous"]["version"] == "1.0.0"  # type: ignore[index]
        assert docker("run", "--rm", v2, "tail", "-n1", "/opt/demo/demo_app.py") == "# version 2"
        assert (saves / "save.json").read_text() == '{"runs": 7}'
        out = sandbox(env, "rollback", APP)
        assert out.returncode == 0, out.stderr
        assert record(env)["image-id"] == inspect(v1)["Id"]
        assert (saves / "save.json").read_text() == '{"runs": 7}'
    finally:
        docker("rmi", f"{PREFIX}-keep:2", check=False)
        sandbox(env, "uninstall", APP)


def test_update_under_a_running_instance_is_refused(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    v1, v2 = versions["v1"], versions["v2"]
    full1, full2 = tmp_path / "v1.sbx", tmp_path / "v2.sbx"
    assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
    assert sandbox(env, "export", v2, "-o", str(full2)).returncode == 0
    assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
    before = record(env)
    cid = docker("run", "-d", "--rm", v1, "sleep", "60")
    try:
        out = sandbox(env, "update", APP, str(full2), "--wait", "1")
        assert out.returncode == 2
        assert "is running" in out.stderr and cid[:12] in out.stderr
        assert record(env) == before
        assert docker("inspect", "-f", "{{.Image}}", cid) == before["image-id"]
    finally:
        docker("rm", "-f", cid, check=False)
        sandbox(env, "uninstall", APP)


def test_rebase_onto_a_patched_base(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path, base_image: str
) -> None:
    v1 = versions["v1"]
    full1 = tmp_path / "v1.sbx"
    assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
    assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
    try:
        refused = sandbox(env, "rebase", APP, "--onto", versions["unrelated"], "--from", base_image)
        assert refused.returncode == 2 and "lineage" in refused.stderr
        assert record(env)["image-id"] == inspect(v1)["Id"]

        out = sandbox(env, "rebase", APP, "--onto", versions["patched"])
        assert out.returncode == 0, out.stdout + out.stderr
        rec = record(env)
        new_id = str(rec["image-id"])
        app_layers = diff_ids(v1)[len(diff_ids(base_image)) :]
        assert diff_ids(new_id) == diff_ids(versions["patched"]) + app_layers
        assert docker("run", "--rm", new_id, "cat", "/etc/sandbox-patched-marker") == "patched"
        run = sandbox(env, "run", "--yes", APP, "--", "0.2")
        assert "demo: run" in run.stdout + run.stderr
        assert sandbox(env, "rollback", APP).returncode == 0
        assert record(env)["image-id"] == inspect(v1)["Id"]
    finally:
        sandbox(env, "uninstall", APP)


def test_thin_file_without_its_base_loads_nothing(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path, base_image: str
) -> None:
    ctx = tmp_path / "b2"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo b2 > /etc/b2\n")
    base2 = f"{PREFIX}-b2:1"
    build(ctx, base2)
    app_tag = f"{PREFIX}-on-b2:1.0.0"
    build(demo_context(tmp_path, "1.0.0", base2), app_tag)
    thin = tmp_path / "thin.sbx"
    out = sandbox(env, "export", app_tag, "--thin", "--base", base2, "-o", str(thin))
    assert out.returncode == 0, out.stderr
    assert thin.stat().st_size < 1024 * 1024
    docker("rmi", app_tag)
    docker("rmi", base2)
    before = images()
    try:
        out = sandbox(env, "install", "--yes", str(thin))
        assert out.returncode == 2
        assert base2 in out.stderr and "not installed" in out.stderr
        assert images() == before
    finally:
        for tag in (app_tag, base2):
            docker("rmi", tag, check=False)


def test_install_of_another_version_goes_through_the_update_safeguards(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    v1, v2 = versions["v1"], versions["v2"]
    full1, full2 = tmp_path / "v1.sbx", tmp_path / "v2.sbx"
    assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
    assert sandbox(env, "export", v2, "-o", str(full2)).returncode == 0
    assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
    before = record(env)
    cid = docker("run", "-d", "--rm", v1, "sleep", "60")
    try:
        out = sandbox(env, "install", "--yes", str(full2))
        assert out.returncode == 2, out.stdout + out.stderr
        assert "is running" in out.stderr and cid[:12] in out.stderr
        assert record(env) == before
        docker("rm", "-f", cid)
        out = sandbox(env, "install", "--yes", str(full2))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "sandbox rollback" in out.stdout
        rec = record(env)
        assert rec["image-id"] == inspect(v2)["Id"]
        assert rec["previous"]["image-id"] == before["image-id"]  # type: ignore[index]
        assert sandbox(env, "rollback", APP).returncode == 0
        assert record(env)["image-id"] == before["image-id"]
    finally:
        docker("rm", "-f", cid, check=False)
        sandbox(env, "uninstall", APP)


def test_an_instance_started_during_the_load_stops_the_switch(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path, docker_client_url: str
) -> None:
    from sandbox.distribution.update import commit_update, preview_update
    from sandbox.engine.adapter import DockerAdapter
    from sandbox.errors import LaunchError

    v1, v2 = versions["v1"], versions["v2"]
    full1, full2 = tmp_path / "v1.sbx", tmp_path / "v2.sbx"
    assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
    assert sandbox(env, "export", v2, "-o", str(full2)).returncode == 0
    image_v2 = inspect(v2)["Id"]
    docker("rmi", v2)  # so the update really loads it
    assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
    before = record(env)
    data_home = Path(env["XDG_DATA_HOME"])
    started: list[str] = []

    def start_instance(_done: int, _total: int) -> None:
        if not started:  # the first chunk is on its way: the old version starts now
            started.append(docker("run", "-d", "--rm", v1, "sleep", "60"))

    try:
        with DockerAdapter.from_env(docker_client_url) as adapter:
            preview = preview_update(full2, APP, adapter, data_home)
            with pytest.raises(LaunchError, match="is running"):
                commit_update(preview, adapter, data_home, progress=start_instance)
        assert started
        assert record(env) == before
        assert image_v2 not in images()  # the image it loaded was taken back
    finally:
        for cid in started:
            docker("rm", "-f", cid, check=False)
        sandbox(env, "uninstall", APP)


def test_update_asking_for_more_stops_for_consent(
    base_image: str, env: dict[str, str], tmp_path: Path
) -> None:
    v1, v2 = f"{PREFIX}-consent:1.0.0", f"{PREFIX}-consent:2.0.0"
    build(demo_context(tmp_path / "a", "1.0.0", base_image), v1)
    build(demo_context(tmp_path / "b", "2.0.0", base_image, capabilities="webcam = true\n"), v2)
    full1, full2 = tmp_path / "v1.sbx", tmp_path / "v2.sbx"
    try:
        assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
        assert sandbox(env, "export", v2, "-o", str(full2)).returncode == 0
        image_v2 = inspect(v2)["Id"]
        docker("rmi", v2)
        assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
        before = record(env)
        out = subprocess.run(
            ["sandbox", "update", APP, str(full2)],
            env=env,
            input="n\n",
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert out.returncode == 1, out.stdout + out.stderr
        assert "asks for more: webcam" in out.stdout
        assert "nothing was changed" in out.stdout
        assert record(env) == before
        assert image_v2 not in images()
    finally:
        sandbox(env, "uninstall", APP)
        for tag in (v1, v2):
            docker("rmi", tag, check=False)


def test_rebase_failing_its_smoke_check_keeps_the_old_image(
    versions: dict[str, str], base_image: str, env: dict[str, str], tmp_path: Path
) -> None:
    v1 = f"{PREFIX}-nosmoke:1.0.0"
    build(demo_context(tmp_path, "1.0.0", base_image, smoke='smoke = ["/bin/false"]'), v1)
    full1 = tmp_path / "v1.sbx"
    try:
        assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
        assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
        before = record(env)
        tags_before = set(docker("images", "--format", "{{.Repository}}:{{.Tag}}").split())
        out = sandbox(env, "rebase", APP, "--onto", versions["patched"])
        assert out.returncode != 0
        assert "smoke check" in out.stderr and "exited 1" in out.stderr
        assert record(env) == before
        tags_after = set(docker("images", "--format", "{{.Repository}}:{{.Tag}}").split())
        assert not {t for t in tags_after - tags_before if "-rebase-" in t}
    finally:
        sandbox(env, "uninstall", APP)
        docker("rmi", v1, check=False)


REBUILT = "rebuilt the full image on the client"


def test_thin_install_with_the_base_present_loads_directly(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path, base_image: str
) -> None:
    v1 = versions["v1"]
    thin = tmp_path / "thin.sbx"
    out = sandbox(env, "export", v1, "--thin", "--base", base_image, "-o", str(thin))
    assert out.returncode == 0, out.stderr
    image_v1 = str(inspect(v1)["Id"])
    docker("rmi", v1)
    assert image_v1 not in images()
    try:
        out = sandbox(env, "install", "--yes", str(thin))
        assert out.returncode == 0, out.stdout + out.stderr
        assert REBUILT not in out.stderr
        assert record(env)["image-id"] == image_v1
        assert docker("run", "--rm", image_v1, "cat", "/opt/demo/demo_app.py")
    finally:
        sandbox(env, "uninstall", APP)


def test_update_reconstruct_rebuilds_a_thin_file_on_the_client(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path, base_image: str
) -> None:
    v1, v2 = versions["v1"], versions["v2"]
    full1, thin2 = tmp_path / "v1.sbx", tmp_path / "v2-thin.sbx"
    assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
    out = sandbox(env, "export", v2, "--thin", "--base", base_image, "-o", str(thin2))
    assert out.returncode == 0, out.stderr
    image_v2 = inspect(v2)["Id"]
    docker("rmi", v2)
    try:
        assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
        out = sandbox(env, "update", APP, str(thin2), "--reconstruct")
        assert out.returncode == 0, out.stdout + out.stderr
        assert REBUILT in out.stderr and "asked for" in out.stderr
        assert record(env)["image-id"] == image_v2
        assert docker("run", "--rm", v2, "tail", "-n1", "/opt/demo/demo_app.py") == "# version 2"
    finally:
        sandbox(env, "uninstall", APP)


def test_thin_install_on_podman(
    versions: dict[str, str],
    env: dict[str, str],
    tmp_path: Path,
    base_image: str,
    podman_client_url: str,
) -> None:
    """Podman's compat API may refuse an archive without its base layers: the install must
    then rebuild the full archive from the base in Podman's own store, and succeed."""

    thin = tmp_path / "thin.sbx"
    out = sandbox(env, "export", versions["v1"], "--thin", "--base", base_image, "-o", str(thin))
    assert out.returncode == 0, out.stderr
    image_v1 = str(inspect(versions["v1"])["Id"])
    pod_env = dict(env, DOCKER_HOST=podman_client_url)
    with podman_with_base(env, podman_client_url, base_image, (image_v1,)) as podman:
        out = sandbox(pod_env, "install", "--yes", str(thin))
        assert out.returncode == 0, out.stdout + out.stderr
        assert record(pod_env)["image-id"] == image_v1
        loaded = podman.images.details(image_v1)
        assert loaded is not None
        assert loaded.diff_ids == tuple(diff_ids(versions["v1"]))


@contextlib.contextmanager
def podman_with_base(
    env: dict[str, str], podman_url: str, base_image: str, images: tuple[str, ...]
) -> Iterator[Any]:
    """Podman's adapter with `base_image` copied in from Docker; afterwards the app is
    uninstalled there, `images` are removed, and so is the base when this put it there."""
    from sandbox.engine.adapter import DockerAdapter

    base_id = str(inspect(base_image)["Id"])
    with (
        DockerAdapter.from_env(env["DOCKER_HOST"]) as dock,
        DockerAdapter.from_env(podman_url) as podman,
    ):
        had_base = podman.images.details(base_id) is not None
        if not had_base:
            podman.images.load_stream(dock.images.save_stream(base_id))
        assert podman.images.details(base_id) is not None
        try:
            yield podman
        finally:
            sandbox(dict(env, DOCKER_HOST=podman_url), "uninstall", APP)
            for image in images:
                if podman.images.details(image) is not None:
                    podman.images.remove(image)
            if not had_base:
                podman.images.remove(base_id)


def test_list_disk_json_counts_shared_base_bytes(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path, base_image: str
) -> None:
    v1, v2 = versions["v1"], versions["v2"]
    full1, full2 = tmp_path / "v1.sbx", tmp_path / "v2.sbx"
    assert sandbox(env, "export", v1, "-o", str(full1)).returncode == 0
    assert sandbox(env, "export", v2, "-o", str(full2)).returncode == 0
    try:
        assert sandbox(env, "install", "--yes", str(full1)).returncode == 0
        out = sandbox(env, "list", "--disk", "--json")
        assert out.returncode == 0, out.stderr
        (row,) = json.loads(out.stdout)
        assert row["app-id"] == APP and row["version"] == "1.0.0"
        assert row["image-id"] == inspect(v1)["Id"]
        assert row["bytes"] == int(str(inspect(v1)["Size"]))
        assert row["own-bytes"] == row["bytes"] - row["shared-bytes"]
        # the base's layers are shared with the base image itself
        assert row["shared-bytes"] >= int(str(inspect(base_image)["Size"]))
        assert row["previous-own-bytes"] is None
        assert sandbox(env, "update", APP, str(full2)).returncode == 0
        (row,) = json.loads(sandbox(env, "list", "--disk", "--json").stdout)
        assert row["version"] == "2.0.0"
        assert isinstance(row["previous-own-bytes"], int) and row["previous-own-bytes"] >= 0
    finally:
        sandbox(env, "uninstall", APP)
