"""Thin Provider wrappers over X11Provider and WaylandProvider; the display logic stays in those."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from sandbox.policy.plan import EnvVar, Mount, MountKind, WaylandSocketRequest, X11CookieRequest
from sandbox.providers.grant import Grant, ProviderContext


def _env(pairs: tuple[tuple[str, str], ...]) -> tuple[EnvVar, ...]:
    return tuple(EnvVar(k, v) for k, v in pairs)


def _ro_bind(source: Path, target: PurePosixPath) -> Mount:
    return Mount(target=str(target), kind=MountKind.BIND, source=str(source), read_only=True)


class X11DisplayProvider:
    """display.x11 / display.x11-trusted: the X socket and a private Xauthority, read-only."""

    def __init__(self, request: X11CookieRequest) -> None:
        # Imported here: python-xlib costs import time that apps without X11 should not pay.
        from sandbox.providers.x11 import X11Provider

        self.request = request
        self.name = "display.x11-trusted" if request.trusted else "display.x11"
        self._inner = X11Provider()

    def setup(self, ctx: ProviderContext) -> Grant:
        g = self._inner.setup(
            self.request.display,
            ctx.xauthority,
            ctx.instance_dir,
            ctx.hostname,
            trusted=self.request.trusted,
            uid=ctx.uid,
            gid=ctx.gid,
        )
        return Grant(
            mounts=(
                _ro_bind(g.socket_path, g.container_socket_path),
                _ro_bind(g.xauthority_path, g.container_xauthority_path),
            ),
            env=_env(g.env),
            hostname=g.hostname,
        )

    def teardown(self) -> None:
        self._inner.teardown()


class WaylandDisplayProvider:
    """display.wayland: a per-instance dir holding the compositor socket, as XDG_RUNTIME_DIR."""

    name = "display.wayland"

    def __init__(self, request: WaylandSocketRequest) -> None:
        from sandbox.providers.wayland import WaylandProvider

        self.request = request
        self._inner = WaylandProvider()

    def setup(self, ctx: ProviderContext) -> Grant:
        socket = Path(self.request.socket_path)
        g = self._inner.setup(socket.parent, socket.name, ctx.instance_dir, ctx.uid, ctx.gid)
        return Grant(
            mounts=(
                Mount(
                    target=str(g.container_runtime_dir),
                    kind=MountKind.BIND,
                    source=str(g.dir_path),
                    read_only=g.read_only,
                ),
            ),
            env=_env(g.env),
        )

    def teardown(self) -> None:
        self._inner.teardown()


def collect_instance(instance_dir: Path, xauthority: Path | None) -> None:
    """gc of the display providers' leftovers in one dead instance's dir (revokes X11 cookies)."""
    from sandbox.providers import wayland, x11

    x11.collect(instance_dir, xauthority)
    wayland.collect(instance_dir)
