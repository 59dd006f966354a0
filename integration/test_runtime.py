"""Integration tests of the runtime: real launches on Docker and Podman, cgroups, storage, gc."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sandbox
from integration.components import wait_until
from sandbox.engine.adapter import DockerAdapter
from sandbox.errors import LaunchError
from sandbox.host.names import CGROUP_ROOT, unverified_app_id
from sandbox.runtime import cgroups, gc, instances

APP = "org.sandboxtest.RuntimeApp"
OTHER = "org.sandboxtest.RuntimeOther"
SHARED = "org.sandboxtest.RuntimeShared"


def _manifest(app_id: str, command: str, limits: str = "") -> str:
    return (
        textwrap.dedent(
            f"""\
        manifest-version = 1
        [app]
        id = "{app_id}"
        name = "Runtime test"
        version = "1.0"
        command = {command}
        [capabilities.storage]
        saves = "/data/saves"
        """
        )
        + limits
    )


def _build(engine: str, base: str, tag: str, manifest: str, tmp: Path) -> str:
    ctx = tmp / tag.replace("/", "_").replace(":", "_")
    ctx.mkdir()
    (ctx / "sandbox.toml").write_text(manifest)
    labels = subprocess.run(
        [sys.executable, "-m", "sandbox", "manifest", "labels", "--dockerfile", "sandbox.toml"],
        cwd=ctx, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    (ctx / "Dockerfile").write_text(f"FROM {base}\n{labels}")
    subprocess.run(
        [engine, "build", "-q", "-t", tag, "."], cwd=ctx, check=True, capture_output=True
    )
    return tag


@dataclass(frozen=True)
class Engine:
    name: str
    url: str
    images: dict[str, str]  # app id -> the uninstalled image's tag
    ids: dict[str, str]  # app id -> the throwaway identity its image runs as (not installed)


def _engine(name: str, url: str, images: dict[str, str]) -> Engine:
    adapter = DockerAdapter.from_env(url)
    ids = {app: unverified_app_id(app, adapter.image_config(ref).id) for app, ref in images.items()}
    return Engine(name, url, images, ids)


@pytest.fixture(scope="session")
def docker_apps(
    docker_client_url: str,
    tools_image: str,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Engine:
    tmp = tmp_path_factory.mktemp("apps")
    sh = '["/bin/sh", "-c"]'
    limits = '[limits]\nmemory = "64M"\npids = 64\n'
    env = {**os.environ, "DOCKER_HOST": docker_client_url}
    os.environ.update(env)
    return _engine(
        "docker",
        docker_client_url,
        {
            APP: _build("docker", tools_image, "sandbox-test/rt-app", _manifest(APP, sh), tmp),
            OTHER: _build(
                "docker", tools_image, "sandbox-test/rt-other", _manifest(OTHER, sh), tmp
            ),
            SHARED: _build(
                "docker", base_image, "sandbox-test/rt-shared", _manifest(SHARED, sh, limits), tmp
            ),
        },
    )


@pytest.fixture(scope="session")
def podman_apps(podman_client_url: str, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    tmp = tmp_path_factory.mktemp("podman-apps")
    tools = os.environ.get("SANDBOX_TEST_TOOLS_IMAGE", "sandbox-test/tools:latest")
    sh = '["/bin/sh", "-c"]'
    tag = _build("podman", tools, "sandbox-test/rt-app", _manifest(APP, sh), tmp)
    other = _build("podman", tools, "sandbox-test/rt-other", _manifest(OTHER, sh), tmp)
    return _engine(
        "podman", podman_client_url, {APP: f"localhost/{tag}", OTHER: f"localhost/{other}"}
    )


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"{request.param}_apps")  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _private_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def run_app(eng: Engine, image: str, script: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    prepared = sandbox.plan(image, engine_url=eng.url)
    session = sandbox.launch(prepared, args=(script,), stdio=sandbox.Stdio(stdout=out, stderr=err))
    code = session.wait()
    return code, out.getvalue().decode(), err.getvalue().decode()


def _app_cgroup_dirs(app_id: str) -> list[str]:
    return [d for d in cgroups.app_dirs(app_id, cgroups.host_hierarchies()) if os.path.exists(d)]


def _containers(eng: Engine, app_id: str) -> tuple[object, ...]:
    return DockerAdapter.from_env(eng.url).containers_with_label("sandbox.app-id", app_id)


def test_baseline_inside_the_container(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_UID", "1234")
    monkeypatch.setenv("SUDO_GID", "1234")
    script = (
        "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; echo uid=$(id -u) gid=$(id -g); "
        "if (: > /probe) 2>/dev/null; then echo root=writable; else echo root=readonly; fi; "
        "echo net=$(ls /sys/class/net).; "
        "grep -c -E 'docker.sock|podman.sock' /proc/self/mountinfo || true"
    )
    code, out, _ = run_app(engine, engine.images[APP], script)
    assert code == 0, out
    assert "CapEff:\t0000000000000000" in out.splitlines()
    assert "NoNewPrivs:\t1" in out.splitlines()
    assert "uid=1234 gid=1234" in out
    assert "root=readonly" in out
    assert "net=lo." in out
    assert out.splitlines()[-1] == "0"  # no engine socket in the mount table


def test_every_pid_maps_to_the_app(engine: Engine) -> None:
    prepared = sandbox.plan(engine.images[APP], engine_url=engine.url)
    session = sandbox.launch(prepared, args=("sleep 30 & sleep 30 & wait",), stdio=None)
    try:
        pids: tuple[int, ...] = ()

        def three() -> bool:
            nonlocal pids
            pids = gc.container_pids(engine.ids[APP], session.container_id)
            return len(pids) >= 3

        wait_until(three, interval=0.1)
        for pid in pids:
            ident = sandbox.app_for_pid(pid)
            assert ident is not None and ident.app_id == engine.ids[APP]
            assert ident.instance_id == session.instance_id
        assert sandbox.app_for_pid(os.getpid()) is None
        listed = [i for i in gc.list_running() if i.instance_id == session.instance_id]
        assert listed and set(pids) <= set(listed[0].pids)
    finally:
        session.stop(timeout_s=1)
        session.wait()
    assert not _containers(engine, engine.ids[APP])
    assert not _app_cgroup_dirs(engine.ids[APP])


def test_failed_start_leaves_nothing(engine: Engine) -> None:
    prepared = sandbox.plan(engine.images[APP], engine_url=engine.url)
    bad = sandbox.Prepared(
        prepared.image,
        prepared.manifest,
        prepared.facts,
        prepared.plan.__class__(
            **{**prepared.plan.__dict__, "app": prepared.plan.app.__class__(
                **{**prepared.plan.app.__dict__, "command": ("/no/such/binary",)})}
        ),
        prepared.providers,
        prepared.engine_url,
    )  # fmt: skip
    with pytest.raises(LaunchError):
        sandbox.launch(bad, stdio=None)
    assert not _containers(engine, engine.ids[APP])
    assert not _app_cgroup_dirs(engine.ids[APP])
    base = instances.instances_dir(os.geteuid())
    assert not [i for i in instances.list_instances(base) if i.state.app_id == engine.ids[APP]]
    assert not [e for e in os.listdir(base) if e.startswith(instances.PENDING_PREFIX)]


def test_saves_persist_and_stay_private(engine: Engine, tmp_path: Path) -> None:
    eng = engine
    code, _, err = run_app(eng, eng.images[APP], "echo level-7 > /data/saves/slot1")
    assert code == 0, err
    code, out, _ = run_app(eng, eng.images[APP], "cat /data/saves/slot1")
    assert (code, out) == (0, "level-7\n")
    host = tmp_path / "data" / "sandbox" / "apps" / eng.ids[APP] / "saves" / "slot1"
    st = host.stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert oct(host.parent.stat().st_mode & 0o777) == "0o700"
    code, out, _ = run_app(eng, eng.images[OTHER], "ls -A /data/saves; ls -A /data")
    assert code == 0 and "slot1" not in out
    assert not (tmp_path / "data" / "sandbox" / "apps" / APP).exists()  # not installed: not its


@pytest.fixture
def sudo_user(tmp_path: Path) -> Iterator[tuple[str, int, int, Path]]:
    """A throwaway non-root account (name, uid, gid, home) whose home exists without ~/.local."""
    name = f"sbxt{os.getpid() % 100000}"
    home = tmp_path / "home"
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", name],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        st = home.stat()
        subprocess.run(["rm", "-rf", str(home / ".local")], check=True)  # skel may ship one
        yield name, st.st_uid, st.st_gid, home
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def test_saves_under_sudo_belong_to_the_user(
    docker_apps: Engine, sudo_user: tuple[str, int, int, Path]
) -> None:
    _name, uid, gid, home = sudo_user
    env = {**os.environ, "SUDO_UID": str(uid), "SUDO_GID": str(gid), "HOME": "/root"}
    env.pop("XDG_DATA_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", "--yes", docker_apps.images[APP], "--",
         "echo saved > /data/saves/slot; id -u"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, f"{uid}\n"), proc.stderr
    saves = home / ".local/share/sandbox/apps" / docker_apps.ids[APP] / "saves"
    made = [home / ".local", *saves.parents[: len(saves.parents) - len(home.parts) - 1]]
    for path in [*made, saves, saves / "slot"]:
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (uid, gid), path
    assert (saves / "slot").read_text() == "saved\n"
    root_saves = Path("/root/.local/share/sandbox/apps") / docker_apps.ids[APP] / "saves"
    assert not (root_saves / "slot").exists()


def test_two_instances_share_one_memory_limit(docker_apps: Engine) -> None:
    eng = docker_apps
    hog = "import time; b = b'x' * (40 << 20); print('ok', flush=True); time.sleep(%d)"
    # alone, 40 MB fits the 64 MB app limit
    code, out, _ = run_app(eng, eng.images[SHARED], f'python3 -c "{hog % 0}"')
    assert (code, out) == (0, "ok\n")
    first = sandbox.launch(
        sandbox.plan(eng.images[SHARED], engine_url=eng.url),
        args=(f'python3 -c "{hog % 20}"',),
        stdio=None,
    )
    try:
        wait_until(lambda: _usage(eng.ids[SHARED]) > 35 << 20, interval=0.1)
        second = sandbox.launch(
            sandbox.plan(eng.images[SHARED], engine_url=eng.url),
            args=(f'python3 -c "{hog % 20}"',),
            stdio=None,
        )
        codes = [second.wait()]
    finally:
        first.stop(timeout_s=1)
        codes.append(first.wait())
    assert 137 in codes  # the kernel's OOM killer, under the shared parent's limit


def _usage(app_id: str) -> int:
    mount = next(m for m in cgroups.host_hierarchies() if "memory" in m.controllers)
    with open(os.path.join(mount.path, CGROUP_ROOT, app_id, "memory.usage_in_bytes")) as f:
        return int(f.read())


def test_fork_bomb_stops_at_the_pids_limit(docker_apps: Engine) -> None:
    eng = docker_apps
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "for _ in range(300):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5); os._exit(0)\n"
        "        n += 1\n"
        "    except OSError:\n"
        "        break\n"
        "print(n, flush=True)\n"
    )
    start = time.monotonic()
    code, out, _ = run_app(eng, eng.images[SHARED], f"python3 -c '{bomb}'")
    forked = int(out.split()[0])
    assert forked < 64  # stopped by the app's pids limit, far below the 300 attempts
    assert subprocess.run(["true"], timeout=5, check=False).returncode == 0  # the host still forks
    assert time.monotonic() - start < 30
    del code


def _limit(app_id: str, controller: str) -> int | None:
    """The app parent's memory or pids limit in whichever hierarchy owns the controller."""
    for mount in cgroups.host_hierarchies():
        if controller not in mount.controllers and mount.version == 1:
            continue
        knob = {"memory": ("memory.limit_in_bytes", "memory.max"), "pids": ("pids.max",) * 2}
        name = knob[controller][mount.version - 1]
        path = os.path.join(mount.path, CGROUP_ROOT, app_id, name)
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read())
    return None


def test_gc_during_a_launch_keeps_the_app_limits(
    docker_apps: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = docker_apps
    start = DockerAdapter.start
    reports: list[gc.GcReport] = []

    def gc_then_start(self: DockerAdapter, cid: str) -> None:
        # the window between creating the limited app parent and the container's first process
        reports.append(gc.gc((eng.url,)))
        start(self, cid)

    monkeypatch.setattr(DockerAdapter, "start", gc_then_start)
    prepared = sandbox.plan(eng.images[SHARED], engine_url=eng.url)
    session = sandbox.launch(prepared, args=("sleep 30",), stdio=None)
    try:
        assert reports and eng.ids[SHARED] not in reports[0].cgroups
        wait_until(
            lambda: bool(gc.container_pids(eng.ids[SHARED], session.container_id)), interval=0.1
        )
        assert _limit(eng.ids[SHARED], "memory") == prepared.plan.limits.memory_bytes
        assert _limit(eng.ids[SHARED], "pids") == prepared.plan.limits.pids
        # and gc while the app runs leaves the parent (and its limits) alone too
        assert eng.ids[SHARED] not in gc.gc((eng.url,)).cgroups
        assert _limit(eng.ids[SHARED], "memory") == prepared.plan.limits.memory_bytes
    finally:
        session.stop(timeout_s=1)
        session.wait()
    assert not _app_cgroup_dirs(eng.ids[SHARED])


def test_sigkilled_launcher_then_gc_leaves_nothing(engine: Engine) -> None:
    eng = engine
    launcher = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "run", "--yes", eng.images[APP], "--", "sleep 60"],
        stdin=subprocess.DEVNULL, env={**os.environ, "DOCKER_HOST": eng.url},
    )  # fmt: skip
    base = instances.instances_dir(os.geteuid())

    def started() -> bool:
        return any(
            i.state.app_id == eng.ids[APP] and i.state.container_id
            for i in instances.list_instances(base)
        ) and bool(_app_cgroup_dirs(eng.ids[APP]))

    try:
        wait_until(started, interval=0.1)
        [inst] = [i for i in instances.list_instances(base) if i.state.app_id == eng.ids[APP]]
        wait_until(
            lambda: bool(gc.container_pids(eng.ids[APP], inst.state.container_id or "")),
            interval=0.1,
        )
    finally:  # also when a wait fails: never leave a launcher (and its app) behind
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
    report = gc.gc((eng.url,))
    assert not report.problems
    assert not _containers(eng, eng.ids[APP])
    assert not _app_cgroup_dirs(eng.ids[APP])
    assert not inst.path.exists()
    assert not [e for e in os.listdir(base) if e.startswith(instances.PENDING_PREFIX)]


def _catches_sigterm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def _ready(pids: tuple[int, ...], sig: signal.Signals) -> bool:
    """The app runs; for the SIGTERM case, a process of it has its TERM trap installed."""
    if not pids:
        return False
    return sig is not signal.SIGTERM or any(_catches_sigterm(p) for p in pids)


@pytest.mark.parametrize(
    ("sig", "script", "code"),
    [
        # the app's PID 1 handles SIGTERM: docker stop's SIGTERM ends it at once (128 + 15)
        (signal.SIGTERM, "trap 'exit 143' TERM; sleep 60 & wait", 143),
        # `sh -c` as PID 1 has no handler, so the kernel drops the SIGTERM: SIGKILL after 3 s
        (signal.SIGINT, "sleep 60", 137),
    ],
    ids=["term", "int"],
)
def test_signalled_launcher_tears_everything_down(
    engine: Engine, sig: signal.Signals, script: str, code: int
) -> None:
    base = instances.instances_dir(os.geteuid())
    launcher = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "run", "--yes", engine.images[APP], "--", script],
        stdin=subprocess.DEVNULL, env={**os.environ, "DOCKER_HOST": engine.url},
    )  # fmt: skip
    try:

        def running() -> bool:
            # Under load the app's shell may not have run its `trap` yet when its pids appear:
            # wait until a process of it catches SIGTERM, or the test measures the race.
            return any(
                i.state.app_id == engine.ids[APP]
                and i.state.container_id
                and _ready(gc.container_pids(engine.ids[APP], i.state.container_id), sig)
                for i in instances.list_instances(base)
            )

        wait_until(running, interval=0.1)
        [inst] = [i for i in instances.list_instances(base) if i.state.app_id == engine.ids[APP]]
        signalled = time.monotonic()
        launcher.send_signal(sig)
        assert launcher.wait(timeout=20) == code
        assert time.monotonic() - signalled < 10
    finally:
        launcher.kill()
        launcher.wait()
    assert not _containers(engine, engine.ids[APP])
    assert not _app_cgroup_dirs(engine.ids[APP])
    assert not inst.path.exists()
    # other launches (other tests, other users of this runtime dir) may be pending right now
    links = [e for e in os.scandir(base) if e.is_symlink()]
    assert not [e for e in links if os.readlink(e.path) == inst.path.name]
    assert not [i for i in instances.list_instances(base) if i.state.app_id == engine.ids[APP]]


def test_example_launcher_stops_the_app_on_sigint(docker_apps: Engine) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "launcher.py"
    base = instances.instances_dir(os.geteuid())
    launcher = subprocess.Popen(
        [sys.executable, str(example), docker_apps.images[APP], "sleep 60", "--timeout", "120"],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert launcher.stderr is not None
        started = ""
        while "started" not in started:  # printed once launch() returned: handlers are in
            started = launcher.stderr.readline()
            assert started, "the example launcher ended before starting the app"
        signalled = time.monotonic()
        launcher.send_signal(signal.SIGINT)
        code = launcher.wait(timeout=20)
        assert time.monotonic() - signalled < 10
    finally:
        launcher.kill()
        launcher.wait()
    assert code == 137  # `sh -c` as PID 1 ignores SIGTERM: killed after docker stop's 3 s
    assert not _containers(docker_apps, docker_apps.ids[APP])
    assert not _app_cgroup_dirs(docker_apps.ids[APP])
    assert not [i for i in instances.list_instances(base) if i.state.app_id == docker_apps.ids[APP]]


def test_run_without_tty_needs_yes(docker_apps: Engine) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", docker_apps.images[APP], "--", "true"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--yes" in proc.stderr
    assert not _containers(docker_apps, docker_apps.ids[APP])


def test_cli_run_forwards_output_and_exit_code(docker_apps: Engine) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", "-y", docker_apps.images[APP], "--",
         "echo out; echo err >&2; exit 7"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (7, "out\n")
    assert proc.stderr.endswith("err\n")


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    yield
    gc.gc()
