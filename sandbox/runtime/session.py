"""One instance's lifecycle as named steps: app cgroup, providers, container, wait, teardown.

launch() runs them in order on an already planned Prepared (runtime/prepare.py) and undoes
what it made, newest first, on any failure or once the app has exited; it never prints.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, cast

from sandbox.engine.adapter import STDERR, STDOUT, DockerAdapter, PendingWait, read_frames
from sandbox.errors import LaunchError, ProviderError, SandboxError
from sandbox.providers.grant import Grant, Provider, ProviderContext, combine
from sandbox.providers.storage import app_data_dir
from sandbox.runtime import app_cgroup, app_network, instances, supervisor
from sandbox.runtime.app_lock import AppLock
from sandbox.runtime.compile import LaunchTarget, compile, hostname_for
from sandbox.runtime.container_body import create_body
from sandbox.runtime.prepare import Prepared
from sandbox.runtime.spec import ContainerSpec

if TYPE_CHECKING:
    from sandbox.providers.devices import ContainerTarget

STOP_TIMEOUT_S = 3  # docker stop's grace period before SIGKILL when the user stops an app


@dataclass
class Stdio:
    """Where the app's output goes and whether the user's stdin is forwarded."""

    stdout: IO[bytes] | None = None
    stderr: IO[bytes] | None = None
    stdin_fd: int | None = None  # forward this fd (a tty) into the app


@dataclass
class Teardown:
    """What a launch made, undone newest first."""

    steps: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def push(self, what: str, fn: Callable[[], object]) -> None:  # what fn returns is unused
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
        teardown: Teardown,
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


def launch(
    prepared: Prepared,
    *,
    args: tuple[str, ...] = (),
    stdio: Stdio | None = None,
    detach: bool = False,
) -> Session:
    """Create and start the instance; on any failure everything made so far is undone.

    detach: a supervisor process (runtime/supervisor.py) owns the instance, its providers
    and its teardown, so the caller may exit; the returned Session can stop() but not wait().
    """
    if detach:
        inst, cid = supervisor.start_detached(
            lambda: _launch(prepared, args=args, stdio=None, detached=True)
        )
        adapter = DockerAdapter.from_env(prepared.engine_url)
        # No teardown here: the supervisor owns it; this Session can only stop() the app.
        return Session(prepared, adapter, inst, None, cid, None, Teardown(), [])
    return _launch(prepared, args=args, stdio=stdio)


@dataclass(frozen=True)
class _Started:
    """What the container steps leave for the Session."""

    spec: ContainerSpec
    container_id: str
    pending: PendingWait
    pumps: list[threading.Thread]


def _launch(
    prepared: Prepared,
    *,
    args: tuple[str, ...] = (),
    stdio: Stdio | None = None,
    detached: bool = False,
) -> Session:
    adapter = DockerAdapter.from_env(prepared.engine_url)
    launcher = instances.launcher_token()
    teardown = Teardown()
    inst = _new_instance(prepared, launcher, detached, teardown)
    # Shared until the container runs (its processes then keep the parent non-empty);
    # released before any teardown, whose cgroup removal takes it exclusively.
    lock = AppLock(os.geteuid(), prepared.plan.labels.app_id)
    try:
        lock.acquire(shared=True)
        _acquire_app_cgroup(prepared, teardown)
        _acquire_app_network(prepared, adapter, teardown)
        ctx, grant = _setup_providers(prepared, inst, teardown)
        started = _run_container(
            prepared, adapter, inst, ctx=ctx, grant=grant, launcher=launcher, args=args,
            stdio=stdio, teardown=teardown,
        )  # fmt: skip
        lock.release()
        _attach_providers(adapter, started.container_id, prepared.providers)
    except BaseException as exc:
        lock.release()
        for problem in teardown.run():
            exc.add_note(f"teardown: {problem}")
        raise
    return Session(
        prepared,
        adapter,
        inst,
        started.spec,
        started.container_id,
        started.pending,
        teardown,
        started.pumps,
    )


def _new_instance(
    prepared: Prepared, launcher: str, detached: bool, teardown: Teardown
) -> instances.Instance:
    """Step: the pending instance dir, which gc finds should this process die from here on."""
    plan = prepared.plan
    state = instances.InstanceState(
        app_id=plan.labels.app_id,
        instance_id="",
        launcher=launcher,
        created=instances.now(),
        image=prepared.image,
        engine=prepared.engine_url,
        uid=plan.hardening.user.uid,
        xauthority=plan.xauthority(),
        providers=[p.name for p in prepared.providers],
        detached=detached,
    )
    inst = instances.new_instance(instances.instances_dir(os.geteuid()), state)
    teardown.push("instance dir", lambda: instances.remove_instance_dir(inst))
    return inst


def _acquire_app_cgroup(prepared: Prepared, teardown: Teardown) -> None:
    """Step: the app's parent cgroup with the app-wide limits; the caller holds the lock shared."""
    plan = prepared.plan
    cgroup = app_cgroup.for_driver(plan.cgroup_parent.driver, os.geteuid(), plan.labels.app_id)
    cgroup.create(plan.limits, prepared.facts.cgroups)
    teardown.push("app cgroup", cgroup.remove_if_unused)


def _acquire_app_network(prepared: Prepared, adapter: DockerAdapter, teardown: Teardown) -> None:
    """Step: the app's own network (`network = true`), shared by its instances, fenced where
    the launcher may; the caller holds the lock shared, as for the cgroup."""
    net = app_network.for_plan(prepared.plan, prepared.facts, adapter, os.geteuid())
    if net is not None:
        teardown.push("app network", net.remove_if_unused)
        net.acquire()


def _setup_providers(
    prepared: Prepared, inst: instances.Instance, teardown: Teardown
) -> tuple[ProviderContext, Grant]:
    """Step: every provider set up in order (each one's teardown pushed first), grants merged."""
    plan, facts = prepared.plan, prepared.facts
    ctx = ProviderContext(
        app_id=plan.labels.app_id,
        instance_dir=inst.path,
        uid=plan.hardening.user.uid,
        gid=plan.hardening.user.gid,
        hostname=hostname_for(plan.labels.app_id),
        data_home=Path(facts.user.data_home or Path.home() / ".local" / "share"),
    )
    grants: list[Grant] = []
    for provider in prepared.providers:
        teardown.push(provider.name, provider.teardown)
        grants.append(provider.setup(ctx))
    return ctx, combine(grants)


def _run_container(
    prepared: Prepared,
    adapter: DockerAdapter,
    inst: instances.Instance,
    *,
    ctx: ProviderContext,
    grant: Grant,
    launcher: str,
    args: tuple[str, ...],
    stdio: Stdio | None,
    teardown: Teardown,
) -> _Started:
    """Steps: compile the spec, create the container, attach its output, start it."""
    stdin_fd = stdio.stdin_fd if stdio else None
    user = prepared.facts.user
    # the image's VOLUMEs and WORKDIR, from resolve's inspect (else one here); the container is
    # made from that config's id, so a tag moved since then cannot bring other VOLUMEs
    image = prepared.image_config or adapter.image_config(prepared.image)
    spec = compile(
        prepared.plan,
        grant,
        LaunchTarget(
            image=image.id or prepared.image,
            launcher=launcher,
            instance_dir=str(inst.path),
            args=args,
            stdin_open=stdin_fd is not None,
            home=user.home if user.available else None,
            runtime_dir=user.runtime_dir if user.available else None,
            storage_dir=str(app_data_dir(ctx.data_home, ctx.app_id)),
            image_volumes=image.volumes,
            image_working_dir=image.working_dir,
        ),
    )
    cid = adapter.create(create_body(spec), name=spec.name)
    teardown.push("container", lambda: _remove_quietly(adapter, cid))
    instances.promote(inst, cid)
    pumps = _attach_stdio(adapter, cid, stdio, teardown)
    pending = adapter.wait_later(cid)
    for t in pumps:
        t.start()
    adapter.start(cid)
    return _Started(spec, cid, pending, pumps)


def _attach_stdio(
    adapter: DockerAdapter, cid: str, stdio: Stdio | None, teardown: Teardown
) -> list[threading.Thread]:
    """Step: the output pumps (started with the container) and the stdin pump (at once)."""
    if stdio is None or not (stdio.stdout or stdio.stderr):
        return []
    sock, early = adapter.attach(cid, stdin=stdio.stdin_fd is not None)
    teardown.push("attach", sock.close)
    out = {STDOUT: stdio.stdout, STDERR: stdio.stderr}
    pumps = [threading.Thread(target=read_frames, args=(sock, early, out), daemon=True)]
    if stdio.stdin_fd is not None:
        threading.Thread(target=_pump_in, args=(stdio.stdin_fd, sock), daemon=True).start()
    return pumps


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
    """Step: hand the running container to the providers that need it; an app that already
    exited has nothing left to attach to."""
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


def _remove_quietly(adapter: DockerAdapter, cid: str) -> None:
    adapter.remove(cid)
