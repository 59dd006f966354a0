"""display.x11 against a real X server and hardened containers: what an untrusted app can't do."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import Mount

from integration.components import X11Display, poll
from integration.containers import APP_UID, hardened, run_to_end
from sandbox.attribution import windows
from sandbox.policy.plan import X11CookieRequest
from sandbox.providers import x11
from sandbox.providers.grant import ProviderContext
from sandbox.providers.x11 import X11Grant, X11Provider

PROBES = Path(__file__).resolve().parent / "probes"


@pytest.fixture
def host_window(x11_display: X11Display) -> Iterator[int]:
    """A mapped window owned by a trusted host client (this test process)."""
    d = x11.open_display(
        x11_display.display, Path(x11_display.xauthority) if x11_display.xauthority else None
    )
    win = d.screen().root.create_window(0, 0, 64, 64, 0, d.screen().root_depth)
    win.set_wm_name("host secret")
    win.map()
    d.sync()
    yield win.id
    win.destroy()
    d.close()


def _provider(
    x11_display: X11Display, tmp_path: Path, *, trusted: bool
) -> tuple[X11Provider, X11Grant]:
    instance = tmp_path / "instance"
    provider = X11Provider(
        X11CookieRequest(
            trusted, x11_display.display, x11_display.socket_path, x11_display.xauthority
        )
    )
    hostname = f"app-{uuid.uuid4().hex[:8]}"
    provider.setup(
        ProviderContext("org.sandboxtest.X", instance, APP_UID, APP_UID, hostname, tmp_path)
    )
    assert provider.grant is not None
    return provider, provider.grant


def _hardened(grant: X11Grant) -> dict[str, Any]:
    return hardened(
        hostname=grant.hostname,
        environment=dict(grant.env),
        mounts=[
            Mount(str(grant.container_socket_path), str(grant.socket_path), "bind", read_only=True),
            Mount(
                str(grant.container_xauthority_path),
                str(grant.xauthority_path),
                "bind",
                read_only=True,
            ),
            Mount("/probe", str(PROBES), "bind", read_only=True),
        ],
    )


def _probe(
    docker_client: docker.DockerClient, image: str, grant: X11Grant, host_window: int
) -> dict[str, Any]:
    code, out = run_to_end(
        docker_client,
        image,
        ["python3", "/probe/x11_probe.py", str(host_window)],
        **_hardened(grant),
    )
    assert code == 0, out
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_untrusted_app_cannot_spy_inject_or_tamper(
    x11_display: X11Display,
    base_image: str,
    docker_client: docker.DockerClient,
    host_window: int,
    tmp_path: Path,
) -> None:
    provider, grant = _provider(x11_display, tmp_path, trusted=False)
    try:
        assert grant.authid is not None
        st = grant.xauthority_path.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (APP_UID, 0o600)
        r = _probe(docker_client, base_image, grant, host_window)
    finally:
        provider.teardown()
    assert r["own_window"] == "ok"  # the app can draw its own window
    assert r["getimage_root"] == "BadAccess"
    assert r["getimage_host"] == "BadAccess"
    assert not r["xtest"] and not r["xres"] and not r["security"] and not r["record"]
    assert set(r["extensions"]) <= {"BIG-REQUESTS", "XC-MISC"}
    assert r["grab_keyboard"] == "BadAccess"
    assert r["send_event_host"] == "BadWindow"
    assert r["change_property_host"] == "BadAccess"
    # The documented leak: the tree (and titles) stays readable.
    assert r["query_tree_root"] == "ok"


def test_trusted_grant_shows_the_hole(
    x11_display: X11Display,
    base_image: str,
    docker_client: docker.DockerClient,
    host_window: int,
    tmp_path: Path,
) -> None:
    provider, grant = _provider(x11_display, tmp_path, trusted=True)
    try:
        assert grant.authid is None
        r = _probe(docker_client, base_image, grant, host_window)
    finally:
        provider.teardown()
    assert not grant.xauthority_path.exists()
    assert r["getimage_root"] == "ok"
    assert r["getimage_host"] == "ok"
    assert r["xtest"]
    assert r["change_property_host"] == "ok"


def test_teardown_cuts_off_live_clients_and_the_cookie(
    x11_display: X11Display,
    base_image: str,
    tools_image: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    provider, grant = _provider(x11_display, tmp_path, trusted=False)
    kept = tmp_path / "kept-cookie"  # a copy the app could have made of its cookie
    kept.write_bytes(grant.xauthority_path.read_bytes())
    os.chown(kept, APP_UID, APP_UID)
    os.chmod(kept, 0o600)
    container = docker_client.containers.run(
        base_image, ["python3", "/probe/x11_hold.py"], detach=True, **_hardened(grant)
    )
    try:
        poll(lambda: b"connected" in container.logs(), 30, 0.1)
        assert b"connected" in container.logs()
        provider.teardown()
        status = container.wait(timeout=30)
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    assert "cut off" in logs and status["StatusCode"] == 0, logs
    assert not grant.xauthority_path.exists()
    assert not (tmp_path / "instance" / x11.STATE_FILE).exists()
    kwargs = _hardened(grant)
    kwargs["mounts"][1] = Mount(
        str(grant.container_xauthority_path), str(kept), "bind", read_only=True
    )
    code, out = run_to_end(docker_client, tools_image, ["xdpyinfo"], **kwargs)
    assert code != 0, out


def test_gc_revokes_after_a_killed_launcher(x11_display: X11Display, tmp_path: Path) -> None:
    """The provider's holding connection dies with the launcher: on a server that does not
    reset (every real desktop has other clients), the authorization survives, so gc must revoke
    it from the recorded state."""
    instance = tmp_path / "instance"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from sandbox.policy.plan import X11CookieRequest\n"
        "from sandbox.providers.grant import ProviderContext\n"
        "from sandbox.providers.x11 import X11Provider\n"
        "p = X11Provider(X11CookieRequest(False, sys.argv[1], sys.argv[4], sys.argv[2] or None))\n"
        "p.setup(ProviderContext('org.sandboxtest.X', Path(sys.argv[3]), 0, 0, 'gc-host',"
        " Path(sys.argv[3])))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    launcher = subprocess.Popen(
        [
            "python3",
            "-c",
            script,
            x11_display.display,
            x11_display.xauthority or "",
            str(instance),
            x11_display.socket_path,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert launcher.stdout is not None
        assert launcher.stdout.readline().strip() == b"ready"
    finally:
        launcher.kill()
        launcher.wait()
    env = {
        **os.environ,
        "DISPLAY": x11_display.display,
        "XAUTHORITY": str(instance / x11.XAUTHORITY_FILE),
    }
    assert subprocess.run(["xdpyinfo"], env=env, capture_output=True, check=False).returncode == 0
    kept = tmp_path / "kept-cookie"
    kept.write_bytes((instance / x11.XAUTHORITY_FILE).read_bytes())
    state = x11.read_state(instance)
    assert state is not None
    assert x11.collect(instance, Path(x11_display.xauthority) if x11_display.xauthority else None)
    assert not (instance / x11.XAUTHORITY_FILE).exists()
    assert x11.read_state(instance) is None
    assert not x11.revoke(x11_display.display, Path(x11_display.xauthority or ""), state.authid)
    # The cookie the killed launcher handed out no longer connects.
    env["XAUTHORITY"] = str(kept)
    assert subprocess.run(["xdpyinfo"], env=env, capture_output=True, check=False).returncode != 0


def _cgroup_dirs(app_id: str) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return [p / "sandbox" / app_id for p in root.iterdir() if (p / "sandbox" / app_id).is_dir()]


def test_windows_names_the_app_of_a_container_window(
    x11_display: X11Display, tools_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    app_id = "org.sandboxtest.Eyes"
    provider, grant = _provider(x11_display, tmp_path, trusted=False)
    env = {**os.environ, "DISPLAY": x11_display.display}
    if x11_display.xauthority:
        env["XAUTHORITY"] = x11_display.xauthority
    host_eyes = subprocess.Popen(["xeyes", "-name", "hosteyes"], env=env)
    kwargs = _hardened(grant)
    container = docker_client.containers.run(
        tools_image, ["xeyes"], detach=True, cgroup_parent=f"/sandbox/{app_id}", **kwargs
    )
    try:
        container.reload()
        app_pid = int(container.attrs["State"]["Pid"])
        found: dict[int, Any] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = {w.pid: w for w in windows(x11_display.display) if w.pid is not None}
            if app_pid in found and host_eyes.pid in found:
                break
            time.sleep(0.2)
        assert found[app_pid].app_id == app_id
        assert found[app_pid].instance_id == (container.id or "")[:12]
        assert found[host_eyes.pid].app_id is None
        out = subprocess.run(
            ["sandbox", "windows", "--json", "--display", x11_display.display],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        by_pid = {o["pid"]: o for o in json.loads(out)}
        assert by_pid[app_pid]["app_id"] == app_id
        assert by_pid[host_eyes.pid]["app_id"] is None
        assert set(by_pid[app_pid]) >= {"window_id", "title", "pid", "app_id"}
    finally:
        container.remove(force=True)
        host_eyes.kill()
        host_eyes.wait()
        provider.teardown()
        for d in _cgroup_dirs(app_id):  # docker never removes the parent it was given
            d.rmdir()
