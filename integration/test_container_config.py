"""A hostile image's config (ENTRYPOINT, VOLUME, ENV, HEALTHCHECK, USER, ...) reaches no app.

From inside real containers, on Docker and on the harness's Podman: the app runs through the
runtime's plan (`integration/containers.plan_as_labelled` reads the image's config with its
labels, as resolve does) and `sandbox.launch()`, and a twin without the sandbox's body shows
the same image does get its entrypoint and a volume.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sandbox
from integration.components import engine_get
from integration.containers import plan_as_labelled
from sandbox.engine.adapter import DockerAdapter
from sandbox.runtime.container_body import IMAGE_CONFIG_FIELDS

APP = "org.sandboxtest.ConfigApp"
IMPOSTOR = "com.evil.Impostor"
MANIFEST = textwrap.dedent(
    f"""\
    manifest-version = 1
    [app]
    id = "{APP}"
    name = "Image config test"
    version = "1.0"
    command = ["/bin/sh", "-c"]
    """
)
HOSTILE = """\
VOLUME /data
ENV HOME=/evil SANDBOX_APP_ID={impostor}
ENTRYPOINT ["/bin/sh", "-c", "echo pwned > /tmp/x; exec \\"$@\\"", "--"]
HEALTHCHECK --interval=1s CMD ["/bin/sh", "-c", "echo hc > /tmp/healthchecked"]
STOPSIGNAL SIGKILL
WORKDIR /opt
USER 4242:4242
"""
# Each line reports what the app sees; the sleep lets the 1 s healthcheck fire, were it on.
SCRIPT = (
    "if test -e /tmp/x; then echo entrypoint=ran; else echo entrypoint=none; fi; "
    "echo uid=$(id -u) app=$SANDBOX_APP_ID home=$HOME pwd=$(pwd); "
    "if (echo x > /data/f) 2>/dev/null; then echo data=writable; else echo data=refused; fi; "
    "grep ' /data ' /proc/self/mountinfo; "
    "sleep 3; "
    "if test -e /tmp/healthchecked; then echo health=ran; else echo health=none; fi"
)
UID = 1234


@dataclass(frozen=True)
class Hostile:
    engine: str
    url: str
    image: str


def _build(engine: str, base: str, ctx: Path) -> str:
    """The hostile image, tagged by its Dockerfile's content (so a rerun reuses it)."""
    (ctx / "sandbox.toml").write_text(MANIFEST)
    labels = subprocess.run(
        [sys.executable, "-m", "sandbox", "manifest", "labels", "--dockerfile", "sandbox.toml"],
        cwd=ctx, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    dockerfile = f"FROM {base}\n{labels}\n{HOSTILE.format(impostor=IMPOSTOR)}"
    tag = f"sandbox-test/cfg-hostile:{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"
    (ctx / "Dockerfile").write_text(dockerfile)
    fmt = ["--format", "docker"] if engine == "podman" else []  # OCI drops HEALTHCHECK
    subprocess.run(
        [engine, "build", "-q", *fmt, "-t", tag, "."], cwd=ctx, check=True, capture_output=True
    )
    return tag if engine == "docker" else f"localhost/{tag}"


@pytest.fixture(scope="session")
def docker_hostile(
    docker_client_url: str, tools_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Hostile:
    tag = _build("docker", tools_image, tmp_path_factory.mktemp("cfg-docker"))
    return Hostile("docker", docker_client_url, tag)


@pytest.fixture(scope="session")
def podman_hostile(podman_client_url: str, tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    tools = os.environ.get("SANDBOX_TEST_TOOLS_IMAGE", "sandbox-test/tools:latest")
    tag = _build("podman", tools, tmp_path_factory.mktemp("cfg-podman"))
    return Hostile("podman", podman_client_url, tag)


@pytest.fixture(params=["docker", "podman"])
def hostile(request: pytest.FixtureRequest) -> Hostile:
    return request.getfixturevalue(f"{request.param}_hostile")  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _as_a_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("SUDO_UID", str(UID))  # the plan's uid, not the image's USER 4242
    monkeypatch.setenv("SUDO_GID", str(UID))


def _json(url: str, path: str) -> object:
    status, body = engine_get(url, path)
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


def _volumes(url: str) -> set[str]:
    answer = _json(url, "/volumes")
    assert isinstance(answer, dict)
    return {str(v["Name"]) for v in answer.get("Volumes") or ()}


@dataclass(frozen=True)
class Seen:
    lines: dict[str, str]  # "entrypoint" -> "none", ... from the app's output
    mountinfo: tuple[str, str]  # the /data mount's options and its fs type
    container: dict[str, object]  # the engine's inspect while the app ran
    new_volumes: set[str]  # volumes that appeared while it ran, and after


def _run(h: Hostile) -> Seen:
    before = _volumes(h.url)
    out, err = io.BytesIO(), io.BytesIO()
    prepared = plan_as_labelled(h.image, h.url)
    session = sandbox.launch(prepared, args=(SCRIPT,), stdio=sandbox.Stdio(stdout=out, stderr=err))
    try:
        raw = _json(h.url, f"/containers/{session.container_id}/json")
        during = _volumes(h.url) - before
    finally:
        code = session.wait()
    assert code == 0, err.getvalue().decode()
    assert isinstance(raw, dict)
    text = out.getvalue().decode()
    lines = text.splitlines()
    pairs = [w.split("=", 1) for line in lines if " - " not in line for w in line.split()]
    (mount,) = [line.split() for line in lines if " /data " in line]  # one mount at /data
    return Seen(
        {p[0]: p[1] for p in pairs if len(p) == 2},
        (mount[5], mount[mount.index("-") + 1]),
        raw,
        during | (_volumes(h.url) - before),
    )


def test_the_image_config_reaches_no_app(hostile: Hostile) -> None:
    seen = _run(hostile)
    assert seen.lines["entrypoint"] == "none"  # the ENTRYPOINT never ran
    assert seen.lines["uid"] == str(UID)  # the plan's user, not USER 4242
    assert seen.lines["app"] == APP  # the sandbox's SANDBOX_APP_ID wins over the image's ENV
    assert seen.lines["home"] == "/evil"  # a variable the sandbox does not set stays the image's
    assert seen.lines["pwd"] == "/opt"  # WORKDIR: the image's, as an absolute path
    assert seen.lines["data"] == "refused"  # VOLUME /data: a read-only tmpfs, nothing persists
    options, fs = seen.mountinfo
    assert options.split(",")[0] == "ro" and fs == "tmpfs", seen.mountinfo
    assert seen.lines["health"] == "none"  # no healthcheck ran inside
    assert not seen.new_volumes  # no anonymous volume, during the run or left after it
    config = seen.container["Config"]
    assert isinstance(config, dict)
    assert config["Healthcheck"]["Test"] == ["NONE"]
    assert str(config["StopSignal"]) in {"SIGTERM", "15"}  # Podman answers the number
    state = seen.container["State"]
    assert isinstance(state, dict)
    assert not (state.get("Health") or {}).get("Status")  # Docker: absent; Podman: ""
    mounts = seen.container.get("Mounts") or []
    assert isinstance(mounts, list)
    assert not [m for m in mounts if m.get("Type") == "volume"]


def test_every_field_of_a_real_image_config_is_decided(hostile: Hostile) -> None:
    """A field an engine starts to answer fails here until container_body decides it."""
    quoted = hostile.image.replace("/", "%2F")
    answer = _json(hostile.url, f"/images/{quoted}/json")
    assert isinstance(answer, dict)
    assert set(answer["Config"]) <= set(IMAGE_CONFIG_FIELDS), set(answer["Config"])
    assert answer["Config"]["Volumes"] == {"/data": {}}  # the image is as hostile as it says


@pytest.fixture
def twin(hostile: Hostile) -> Iterator[str]:
    """A container of the hostile image from a plain body (image, command, user) only."""
    adapter = DockerAdapter.from_env(hostile.url)
    body = {"Image": hostile.image, "Cmd": ["/bin/sh", "-c", "cat /tmp/x"], "User": f"{UID}"}
    cid = adapter.create(body, name=None)
    try:
        yield cid
    finally:
        adapter.remove(cid)  # v=1: its anonymous volume goes with it


def test_twin_without_the_sandboxs_body_the_image_config_does_apply(
    hostile: Hostile, twin: str
) -> None:
    """The same image created plainly: the entrypoint runs and /data is an engine volume."""
    raw = _json(hostile.url, f"/containers/{twin}/json")
    assert isinstance(raw, dict)
    assert raw["Path"] == "/bin/sh" and raw["Args"][:2] == ["-c", 'echo pwned > /tmp/x; exec "$@"']
    assert [m["Destination"] for m in raw.get("Mounts") or () if m["Type"] == "volume"] == ["/data"]
    assert raw["Config"]["Healthcheck"]["Test"][0] != "NONE"
