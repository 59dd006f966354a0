"""audio.playback / audio.record: one filtering proxy per instance; never the raw server socket."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from sandbox.errors import ProviderError
from sandbox.policy.plan import EnvVar, Mount, MountKind, PulseProxyRequest
from sandbox.providers.grant import Grant, ProviderContext

# Inside the container: the dir holding the proxy socket and the client.conf that turns off
# shared memory (the proxy only relays socket transfers; shm would bypass the filter).
CONTAINER_DIR = "/run/sandbox/pulse"
SOCKET_NAME = "native"
CLIENT_CONF_NAME = "client.conf"


class PulseProvider:
    """Starts the app's proxy in the launcher (a thread) and stops it at teardown."""

    def __init__(self, request: PulseProxyRequest) -> None:
        self.request = request
        self.name = "audio.record" if request.record else "audio.playback"
        self._dir: Path | None = None
        self._proxy: object | None = None

    def setup(self, ctx: ProviderContext) -> Grant:
        from sandbox.host.runtime_dirs import runtime_root
        from sandbox.providers.pulse.proxy import PulseProxy, write_client_conf
        from sandbox.providers.pulse.rules import AudioGrant

        directory = ctx.instance_dir / "pulse"
        try:
            directory.mkdir(mode=0o700)
            os.chown(directory, ctx.uid, ctx.gid)
        except OSError as exc:
            raise ProviderError(f"audio: cannot create {directory}: {exc}") from exc
        self._dir = directory
        write_client_conf(directory / CLIENT_CONF_NAME)
        proxy = PulseProxy(
            directory / SOCKET_NAME,
            Path(self.request.server_socket),
            # icon_name is a theme icon name: install puts the app's icon in hicolor by its id.
            AudioGrant(
                app_id=self.request.app_id,
                app_name=self.request.app_name,
                record=self.request.record,
                icon=self.request.app_id,
            ),
            owner_uid=ctx.uid,
            # The caps are per app: every instance's proxy (launchers and detached supervisors
            # are separate processes) counts in the same slot files, next to the app locks.
            shared_dir=runtime_root(os.geteuid()) / "audio" / ctx.app_id,
        )
        proxy.start()
        self._proxy = proxy
        return Grant(
            mounts=(
                Mount(
                    target=CONTAINER_DIR,
                    kind=MountKind.BIND,
                    source=str(directory),
                    read_only=True,
                ),
            ),
            env=(
                EnvVar("PULSE_SERVER", f"unix:{CONTAINER_DIR}/{SOCKET_NAME}"),
                EnvVar("PULSE_CLIENTCONFIG", f"{CONTAINER_DIR}/{CLIENT_CONF_NAME}"),
            ),
        )

    def teardown(self) -> None:
        from sandbox.providers.pulse.proxy import PulseProxy

        proxy, self._proxy = self._proxy, None
        if isinstance(proxy, PulseProxy):
            proxy.stop()
        directory, self._dir = self._dir, None
        if directory is not None:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(directory)
