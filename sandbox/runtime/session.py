"""One instance's lifecycle: set up, create, start, wait, tear down in reverse; never prints."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, cast

from sandbox.engine.adapter import STDERR, STDOUT, DockerAdapter, PendingWait, read_frames
from sandbox.errors import (
    LaunchError,
    ManifestError,
    PolicyError,
    ProbeError,
    ProviderError,
    SandboxError,
)
from sandbox.host import names
from sandbox.policy.facts import HostFacts
from sandbox.policy.manifest import LABEL_MANIFEST, Manifest, manifest_from_labels
from sandbox.policy.plan import CgroupDriverName, LaunchPlan
from sandbox.providers.grant import Grant, Provider, ProviderContext, combine
from sandbox.providers.storage import app_data_dir
from sandbox.runtime import instances
from sandbox.runtime.compile import LaunchTarget, compile, hostname_for
from sandbox.runtime.container_body import create_body
from sandbox.runtime.spec import ContainerSpec

if TYPE_CHECKING:
    from sandbox.distribution.installed import InstalledApp
    from sandbox.providers.devices import ContainerTarget

STOP_TIMEOUT_S = 3  # docker stop's grace period before SIGKILL when the user stops an app


@dataclass(frozen=True)
class Prepared:
    """Everything decided before consent: what runs, where, with which permissions."""

    image: str
    manifest: Manifest
    facts: HostFacts
    plan: LaunchPlan  # as it will really run (unserved requests already UNAVAILABLE)
    providers: tuple[Provider, ...]
    engine_url: str
    installed: InstalledApp | None = None  # the install record when TARGET names an installed app


class AppLock:
    """flock on <runtime root>/locks/<app-id>.lock, guarding one app's cgroup parent (or slice).

    Removing it (teardown, gc) takes the lock exclusively. A launch holds it shared from creating
    and limiting the parent until the engine has started the container: until then the parent
    is empty and a remover would delete it, and the engine would re-create it without limits.
    Creating under a shared lock is safe: it is idempotent and launchers of one app write the
    same plan's limits; flock cannot turn an exclusive lock into a shared one without a gap.
    """

    def __init__(self, uid: int, app_id: str) -> None:
        self._path = instances.runtime_root(uid) / "locks" / f"{names.check_app_id(app_id)}.lock"
        self._fd: int | None = None

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        """Take the lock; with wait=False, False (and nothing held) while another holds it."""
        if self._fd is None:
            os.makedirs(self._path.parent, mode=0o700, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self._fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Drop the lock; idempotent. Closing the fd releases it (the kernel does so on death)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def app_lock(uid: int, app_id: str, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold the app's lock for the block; yields False (not held) when wait=False and busy."""
    lock = AppLock(uid, app_id)
    try:
        yield lock.acquire(shared=shared, wait=wait)
    finally:
        lock.release()


def resolve_image(
    adapter: DockerAdapter, target: str, installed: InstalledApp | None = None
) -> tuple[str, Manifest]:
    """APP-ID -> its installed image (`installed`, the app's install record), else the newest
    local image whose manifest label names it; else TARGET is an image."""
    if installed is not None:
        return installed.image_id, _manifest_of(adapter, installed.image_id)
    if names.is_valid_app_id(target):
        best: tuple[int, str, Manifest] | None = None
        for image in adapter.images_with_label(LABEL_MANIFEST):
            try:
                manifest = manifest_from_labels(dict(image.labels))
            except ManifestError:
                continue
            if manifest.app.id == target and (best is None or image.created > best[0]):
                best = (image.created, image.tags[0] if image.tags else image.id, manifest)
        if best is not None:
            return best[1], best[2]
    return target, _manifest_of(adapter, target)


def _manifest_of(adapter: DockerAdapter, image: str) -> Manifest:
    labels = adapter.image_labels(image)
    try:
        return manifest_from_labels(labels)
    except ManifestError as exc:
        where = f"image {image}: {exc.field}" if exc.field else f"image {image}"
        raise ManifestError(where, exc.problem) from None


def prepare(
    target: str,
    *,
    engine_url: str | None = None,
    site_policy: Path | None = None,
    overrides: Path | None = None,
) -> Prepared:
    """Resolve the image, read its manifest, probe, plan; nothing is created yet."""
    from sandbox.providers.registry import providers_for
    from sandbox.runtime.planning import plan_for, probe_for

    adapter = DockerAdapter.from_env(engine_url)
    installed = None
    if names.is_valid_app_id(target):
        from sandbox.distribution.installed import load_installed

        installed = load_installed(target)
    image, manifest = resolve_image(adapter, target, installed)
    env = dict(os.environ)
    if engine_url:
        env["DOCKER_HOST"] = engine_url  # the probe must describe the engine we launch on
    facts = probe_for(manifest, env)
    launch_plan = plan_for(manifest, facts, site_policy=site_policy, overrides=overrides)
    launch_plan, providers = providers_for(launch_plan)
    return Prepared(image, manifest, facts, launch_plan, providers, adapter.url, installed)


@dataclass
class Stdio:
    """Where the app's output goes and whether the user's stdin is forwarded."""

    stdout: IO[bytes] | None = None
    stderr: IO[bytes] | None = None
    stdin_fd: int | None = None  # forward this fd (a tty) into the app


@dataclass
class _Teardown:
    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> list[str]:
        """Every step, newest first; a failing step does not stop the rest."""
        problems: list[str] = []
        while self.steps:
            what, fn = self.steps.pop()
            try:
                fn()
            except (SandboxError, OSError) as exc:
                problems.append(f"{what}: {exc}")
        return problems


class Session:
    """One running instance. wait() or `await wait_async()` for its exit code; stop() ends it;
    close() tears everything down (wait() does that itself)."""

    def __init__(  # noqa: PLR0917  (built only by launch())
        self,
        prepared: Prepared,
        adapter: DockerAdapter,
        instance: instances.Instance,
        spec: ContainerSpec | None,
        container_id: str,
        pending: PendingWait | None,
        teardown: _Teardown,
        pumps: list[threading.Thread],
    ) -> None:
        self.prepared = prepared
        self.spec = spec
        self.container_id = container_id
        self.instance_id = container_id[:12]
        self.app_id = prepared.plan.labels.app_id
        self.instance_dir = instance.path
        self._adapter = adapter
        self._pending = pending
        self._teardown = teardown
        self._pumps = pumps
        self._exit_code: int | None = None
        self._lock = threading.Lock()
        self._wait_lock = threading.Lock()  # one waiter reads the engine; others get its result
        self._stopping = False
        self.teardown_problems: list[str] = []

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    def wait(self) -> int:
        """Block until the app exits, tear down, and return its exit code."""
        with self._wait_lock:
            return self._wait_locked()

    def _wait_locked(self) -> int:
        try:
            if self._exit_code is None:
                if self._pending is None:
                    raise LaunchError("a detached session cannot be waited on")
                self._exit_code = self._pending.result()
                for t in self._pumps:
                    t.join(timeout=2)  # output still in flight after the exit
        finally:
            self.close()
        return self._exit_code

    async def wait_async(self) -> int:
        """wait() without blocking the event loop."""
        import asyncio  # here: importing asyncio costs a plain `sandbox run` ~25 ms

        return await asyncio.to_thread(self.wait)

    def stop(self, timeout_s: int = STOP_TIMEOUT_S) -> None:
        """Ask the app to stop (SIGTERM, then SIGKILL after timeout_s); wait() then returns."""
        with self._lock:
            force = self._stopping
            self._stopping = True
        if force:
            self._adapter.remove(self.container_id)
        else:
            self._adapter.stop(self.container_id, timeout_s)

    def stop_in_background(self) -> None:
        """stop() from a signal handler: never blocks the handler, never raises into it."""

        def run() -> None:
            with contextlib.suppress(SandboxError):
                self.stop()

        threading.Thread(target=run, daemon=True).start()

    def close(self) -> None:
        """Tear everything down in reverse order; idempotent."""
        if self._pending is not None:
            self._pending.close()
        self.teardown_problems += self._teardown.run()


PODMAN_MONITOR_CGROUP = "conmon"  # podman (cgroupfs) puts conmon in <parent>/conmon, never removed


def remove_app_cgroup(uid: int, app_id: str, *, wait: bool = True) -> bool:
    """Remove the app's parent cgroup in every hierarchy once no instance uses it.

    wait=False (gc): an app whose lock is held is left alone (False): a launch in progress
    needs its parent, and the holder removes it itself when its own instance ends."""
    from sandbox.runtime import cgroups

    dirs = cgroups.app_dirs(app_id, cgroups.host_hierarchies())
    with app_lock(uid, app_id, wait=wait) as held:
        if not held:
            return False
        # conmon outlives its container by a few ms; wait for it, but never for app processes
        for _ in range(40):
            monitors = [os.path.join(d, PODMAN_MONITOR_CGROUP) for d in dirs]
            for m in monitors:
                # rmdir refuses (EBUSY) while conmon still runs in it: only an empty one goes
                with contextlib.suppress(OSError):
                    os.rmdir(m)
            if not any(os.path.isdir(m) for m in monitors):
                break
            time.sleep(0.025)
        return cgroups.remove_app_cgroup(app_id)


def remove_app_slice(uid: int, app_id: str, *, wait: bool = True) -> bool:
    """systemd driver: stop the app's slice and drop its limits once no instance uses it;
    wait=False as for remove_app_cgroup."""
    from sandbox.runtime import cgroups, systemd

    mounts = tuple(m.path for m in cgroups.host_hierarchies())
    with app_lock(uid, app_id, wait=wait) as held:
        if not held or systemd.slice_in_use(app_id, mounts):
            return False
        systemd.remove_slice(app_id)
        return True


def _remove_cgroup_if_unused(uid: int, plan: LaunchPlan) -> None:
    if plan.cgroup_parent.driver is CgroupDriverName.CGROUPFS:
        remove_app_cgroup(uid, plan.labels.app_id)
    else:
        remove_app_slice(uid, plan.labels.app_id)


def _pump_in(fd: int, sock: socket.socket) -> None:
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return


class Attachable(Protocol):
    """A provider that also acts on the running container (hotplug): attach() after start."""

    def attach(self, target: ContainerTarget) -> None: ...


def _attach_providers(adapter: DockerAdapter, cid: str, providers: tuple[Provider, ...]) -> None:
    """Hand the running container to the providers that need it; an app that already exited
    has nothing left to attach to."""
    wanting = [p for p in providers if callable(getattr(p, "attach", None))]
    if not wanting:
        return
    from sandbox.providers.devices import ContainerTarget, devices_cgroup_dir

    info = adapter.inspect(cid)
    if info is None or not info.running or info.pid <= 0:
        return
    try:
        target = ContainerTarget(info.pid, devices_cgroup_dir(info.pid))
        for provider in wanting:
            cast(Attachable, provider).attach(target)
    except ProviderError:
        again = adapter.inspect(cid)
        if again is not None and again.running and again.pid == info.pid:
            raise
        # the app exited while we attached: nothing to serve, the wait reports its exit


def launch(
    prepared: Prepared,
    *,
    args: tuple[str, ...] = (),
    stdio: Stdio | None = None,
    detach: bool = False,
) -> Session:
    """Create and start the instance; on any failure everything made so far is undone.

    detach: a supervisor process (see supervise_detached) owns the instance, its providers
    and its teardown, so the caller may exit; the returned Session can stop() but not wait().
    """
    if detach:
        return _launch_detached(prepared, args)
    return _launch(prepared, args=args, stdio=stdio)


def _launch(
    prepared: Prepared,
    *,
    args: tuple[str, ...] = (),
    stdio: Stdio | None = None,
    detached: bool = False,
) -> Session:
    plan, facts = prepared.plan, prepared.facts
    user = facts.user
    uid = plan.hardening.user.uid
    app_id = plan.labels.app_id
    adapter = DockerAdapter.from_env(prepared.engine_url)
    base = instances.instances_dir(os.geteuid())
    launcher = instances.launcher_token()
    state = instances.InstanceState(
        app_id=app_id,
        instance_id="",
        launcher=launcher,
        created=instances.now(),
        image=prepared.image,
        engine=prepared.engine_url,
        uid=uid,
        xauthority=prepared.facts.x11.xauthority,
        providers=[p.name for p in prepared.providers],
        detached=detached,
    )
    teardown = _Teardown()
    inst = instances.new_instance(base, state)
    teardown.push("instance dir", lambda: instances.remove_instance_dir(inst))
    # Shared until the container runs (its processes then keep the parent non-empty);
    # released before any teardown, whose cgroup removal takes it exclusively.
    lock = AppLock(os.geteuid(), app_id)
    try:
        lock.acquire(shared=True)
        if plan.cgroup_parent.driver is CgroupDriverName.CGROUPFS:
            from sandbox.runtime import cgroups

            cgroups.create_app_cgroup(app_id, plan.limits, facts.cgroups)
        else:
            from sandbox.runtime import systemd

            systemd.apply_slice_limits(app_id, plan.limits)
        teardown.push("app cgroup", lambda: _remove_cgroup_if_unused(os.geteuid(), plan))
        hostname = hostname_for(app_id)
        ctx = ProviderContext(
            app_id=app_id,
            instance_dir=inst.path,
            uid=uid,
            gid=plan.hardening.user.gid,
            hostname=hostname,
            data_home=Path(user.data_home or Path.home() / ".local" / "share"),
            xauthority=Path(facts.x11.xauthority) if facts.x11.xauthority else None,
        )
        grants: list[Grant] = []
        for provider in prepared.providers:
            teardown.push(provider.name, provider.teardown)
            grants.append(provider.setup(ctx))
        stdin_fd = stdio.stdin_fd if stdio else None
        spec = compile(
            plan,
            combine(grants),
            LaunchTarget(
                image=prepared.image,
                launcher=launcher,
                instance_dir=str(inst.path),
                args=args,
                stdin_open=stdin_fd is not None,
                home=user.home if user.available else None,
                runtime_dir=user.runtime_dir if user.available else None,
                storage_dir=str(app_data_dir(ctx.data_home, app_id)),
            ),
        )
        cid = adapter.create(create_body(spec), name=spec.name)
        teardown.push("container", lambda: _remove_quietly(adapter, cid))
        instances.promote(inst, cid)
        pumps: list[threading.Thread] = []
        if stdio is not None and (stdio.stdout or stdio.stderr):
            sock, early = adapter.attach(cid, stdin=stdin_fd is not None)
            teardown.push("attach", sock.close)
            out = {STDOUT: stdio.stdout, STDERR: stdio.stderr}
            pumps.append(threading.Thread(target=read_frames, args=(sock, early, out), daemon=True))
            if stdin_fd is not None:
                threading.Thread(target=_pump_in, args=(stdin_fd, sock), daemon=True).start()
        pending = adapter.wait_later(cid)
        for t in pumps:
            t.start()
        adapter.start(cid)
        lock.release()
        _attach_providers(adapter, cid, prepared.providers)
    except BaseException as exc:
        lock.release()
        for problem in teardown.run():
            exc.add_note(f"teardown: {problem}")
        raise
    return Session(prepared, adapter, inst, spec, cid, pending, teardown, pumps)


# --- detached instances: a supervisor process owns the providers ---------------------------------

_ERRORS: dict[str, type[SandboxError]] = {
    "LaunchError": LaunchError,
    "ProviderError": ProviderError,
    "PolicyError": PolicyError,
    "ProbeError": ProbeError,
}


def _launch_detached(prepared: Prepared, args: tuple[str, ...]) -> Session:
    """Fork a supervisor (double fork, own session) that launches and waits; return once the
    app runs. The providers (audio proxy thread, X11 holding connection, hotplug watcher) live
    in the supervisor, so they outlive the caller; its launcher token names it, so gc treats a
    killed supervisor like a killed launcher (container removed, cookie revoked)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked children
        code = 1
        try:
            os.close(read_fd)
            os.setsid()  # no controlling terminal: the user's Ctrl-C never reaches it
            code = 0 if os.fork() != 0 else supervise_detached(prepared, args, write_fd)
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        os.waitpid(pid, 0)
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    try:
        reply = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        reply = {}
    if "error" in reply:
        raise _ERRORS.get(str(reply.get("kind")), LaunchError)(str(reply["error"]))
    if "instance_dir" not in reply:
        raise LaunchError("the detached supervisor ended before the app started")
    inst = instances.load(Path(reply["instance_dir"]))
    if inst is None or not inst.state.container_id:
        raise LaunchError(f"the detached instance at {reply['instance_dir']} is already gone")
    adapter = DockerAdapter.from_env(prepared.engine_url)
    # No teardown here: the supervisor owns it; this Session can only stop() the app.
    return Session(prepared, adapter, inst, None, inst.state.container_id, None, _Teardown(), [])


def supervise_detached(prepared: Prepared, args: tuple[str, ...], report_fd: int) -> int:
    """The supervisor's body: launch, report {"instance_dir"} or {"error"} on report_fd, then
    wait for the app and tear down. SIGTERM stops the app (teardown still runs)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # Every other inherited fd goes: a caller's pipe held open here would block its reader.
    os.closerange(3, report_fd)
    os.closerange(report_fd + 1, 65536)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        session = _launch(prepared, args=args, stdio=None, detached=True)
    except BaseException as exc:  # reported to the caller, who raises it
        _report(report_fd, {"error": str(exc), "kind": type(exc).__name__})
        return 1
    signal.signal(signal.SIGTERM, lambda _n, _f: session.stop_in_background())
    _report(report_fd, {"instance_dir": str(session.instance_dir)})
    try:
        session.wait()
    except SandboxError:
        session.close()
    return 0


def _report(fd: int, message: dict[str, str]) -> None:
    try:
        os.write(fd, json.dumps(message).encode())
    finally:
        os.close(fd)


def _remove_quietly(adapter: DockerAdapter, cid: str) -> None:
    adapter.remove(cid)
