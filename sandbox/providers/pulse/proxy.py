"""Asyncio shell of the per-app PulseAudio proxy: sockets, thread, limits; no filtering rules."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import ProviderError
from sandbox.providers.pulse.budget import Budget, StreamBudget
from sandbox.providers.pulse.cleanup import remove_samples
from sandbox.providers.pulse.filter import PulseFilter
from sandbox.providers.pulse.protocol import COOKIE_LENGTH
from sandbox.providers.pulse.rules import AudioGrant, with_peer
from sandbox.providers.pulse.samples import (
    DEFAULT_MAX_SAMPLE_BYTES,
    DEFAULT_MAX_SAMPLES,
    MemoryLedger,
    SampleLedger,
    SlotLedger,
)

READ_CHUNK = 64 * 1024
# Above this many unsent bytes towards one side, stop reading from the other (backpressure).
WRITE_HIGH_WATER = 256 * 1024
START_TIMEOUT_S = 5.0
CLIENT_CONF = "autospawn = no\nenable-shm = no\nenable-memfd = no\n"


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    max_connections: int = 16
    max_streams: int = 32
    max_samples: int = DEFAULT_MAX_SAMPLES  # names in the server's sample cache
    max_sample_bytes: int = DEFAULT_MAX_SAMPLE_BYTES  # their declared sizes together


class SlotBudget:
    """A Budget shared by every process that serves one app (instances, detached supervisors).

    Unit i is the file `<directory>/<i>.slot`; holding it is holding an flock on an open of
    it. flock belongs to the open file description, so two opens conflict even in one process,
    and the kernel drops the lock when its holder dies: a SIGKILLed launcher leaks nothing.
    """

    def __init__(self, directory: Path, limit: int) -> None:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ProviderError(f"pulse: cannot create {directory}: {exc}") from exc
        self.directory = directory
        self.limit = limit
        self._held: list[int] = []

    @property
    def used(self) -> int:
        """Units this object holds (not the app's total over all processes)."""
        return len(self._held)

    def acquire(self) -> bool:
        for i in range(self.limit):
            try:
                fd = os.open(
                    self.directory / f"{i}.slot", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            except OSError:
                continue  # an unreadable slot counts as taken: fail closed
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._held.append(fd)
            return True
        return False

    def release(self) -> None:
        # Units are interchangeable: which one goes back does not matter.
        if self._held:
            os.close(self._held.pop())

    def close(self) -> None:
        while self._held:
            os.close(self._held.pop())


@dataclass(frozen=True, slots=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred:
    """SO_PEERCRED of a unix socket: the peer's pid as the proxy's (host) pid namespace sees it."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCred(pid, uid, gid)


def write_client_conf(path: Path) -> Path:
    """Write the client.conf for PULSE_CLIENTCONFIG: no shm, no memfd, no autospawn."""
    try:
        path.write_text(CLIENT_CONF, encoding="ascii")
        path.chmod(0o644)
    except OSError as exc:
        raise ProviderError(f"pulse: cannot write {path}: {exc}") from exc
    return path


class PulseProxy:
    """One app's proxy: a socket at `socket_path` relaying filtered traffic to `upstream`."""

    def __init__(
        self,
        socket_path: Path,
        upstream: Path,
        grant: AudioGrant,
        *,
        owner_uid: int | None = None,
        limits: ProxyLimits = ProxyLimits(),
        upstream_cookie: bytes | None = None,
        shared_dir: Path | None = None,
    ) -> None:
        """`shared_dir`: where the app's caps are counted across processes (SlotBudget,
        SlotLedger); without it they count this proxy's connections, streams and samples only."""
        if upstream_cookie is not None and len(upstream_cookie) != COOKIE_LENGTH:
            raise ProviderError(f"pulse: the upstream cookie must be {COOKIE_LENGTH} bytes")
        self.socket_path = socket_path
        self.upstream = upstream
        self.grant = grant
        self.owner_uid = owner_uid
        self.limits = limits
        self._cookie = upstream_cookie or bytes(COOKIE_LENGTH)
        self._budget: Budget
        self._slots: Budget | None = None
        self._ledger: SampleLedger
        if shared_dir is None:
            self._budget = StreamBudget(limits.max_streams)
            self._ledger = MemoryLedger(limits.max_samples, limits.max_sample_bytes)
        else:
            self._budget = SlotBudget(shared_dir / "streams", limits.max_streams)
            self._slots = SlotBudget(shared_dir / "connections", limits.max_connections)
            self._ledger = SlotLedger(
                shared_dir / "samples", limits.max_samples, limits.max_sample_bytes
            )
        self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.closed_for_violation = 0  # connections closed because of a malformed frame

    # -- synchronous API for the launcher -------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise ProviderError("pulse: proxy already started")
        self._remove_samples()  # what a SIGKILLed instance of the app left in the server
        self._thread = threading.Thread(
            target=self._run, name=f"pulse-proxy-{self.grant.app_id}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise ProviderError("pulse: proxy did not start in time")
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise ProviderError(f"pulse: proxy failed to start: {self._start_error}")

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(self._request_stop)
        thread.join()
        self._thread = None
        self._remove_samples()
        for budget in (self._budget, self._slots):
            if isinstance(budget, SlotBudget):
                budget.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _remove_samples(self) -> None:
        """REMOVE_SAMPLE what this proxy uploaded (and dead instances left) unless a running
        instance of the app still holds that name; on failure the ledger keeps the names."""
        names = self._ledger.collect()
        self._ledger.finish(remove_samples(self.upstream, names, self.grant.app_id, self._cookie))

    @property
    def connections(self) -> int:
        return self._connections

    # -- loop thread ----------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._start_error = exc
            self._started.set()
        finally:
            loop.close()

    def _request_stop(self) -> None:
        self._stop.set()

    async def _main(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.socket_path), limit=READ_CHUNK
        )
        if self.owner_uid is not None and self.owner_uid != os.geteuid():
            os.chown(self.socket_path, self.owner_uid, -1)
        os.chmod(self.socket_path, 0o600)
        self._started.set()
        await self._stop.wait()
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._slots is not None:
                if not self._slots.acquire():
                    return
            elif self._connections >= self.limits.max_connections:
                return
            self._connections += 1
            try:
                await self._relay(reader, writer)
            finally:
                self._connections -= 1
                if self._slots is not None:
                    self._slots.release()
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer = peer_credentials(sock)
        filt = PulseFilter(
            with_peer(self.grant, peer.pid), self._budget, self._cookie, self._ledger
        )
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(
                str(self.upstream), limit=READ_CHUNK
            )
        except OSError:
            return
        try:
            pumps = [
                asyncio.create_task(self._pump(reader, filt, True, up_writer, writer)),
                asyncio.create_task(self._pump(up_reader, filt, False, up_writer, writer)),
            ]
            _, rest = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in rest:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            filt.close()
            up_writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await up_writer.wait_closed()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        filt: PulseFilter,
        from_client: bool,
        to_server: asyncio.StreamWriter,
        to_client: asyncio.StreamWriter,
    ) -> None:
        """Read one side until EOF or a violation; the filter decides what each side gets."""
        while True:
            try:
                data = await source.read(READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            try:
                out = filt.from_client(data) if from_client else filt.from_server(data)
            except Exception:  # ProviderError, or any other failure on hostile bytes
                # A malformed or hostile frame ends this connection only; nothing of it is sent.
                # The codec raises ProviderError alone (tests/fuzz); anything else the filter
                # raised on a client's bytes is still that client's fault, never the proxy's.
                self.closed_for_violation += 1
                return
            try:
                if out.to_server:
                    to_server.write(out.to_server)
                if out.to_client:
                    to_client.write(out.to_client)
                # Backpressure: the side we read from waits while either writer is full.
                if out.to_server:
                    await to_server.drain()
                if out.to_client:
                    await to_client.drain()
            except OSError:
                return
