"""display.x11(-trusted) provider: untrusted cookie, private Xauthority, revocation; no policy."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import security

from sandbox.errors import ComponentUnavailableError, ProviderError
from sandbox.host import x11_display, xauth
from sandbox.policy.plan import X11CookieRequest
from sandbox.providers import state as provider_state
from sandbox.providers.grant import Grant, ProviderContext, env_vars, read_only_bind

STATE_FILE = "x11.json"
XAUTHORITY_FILE = "Xauthority"
CONTAINER_XAUTHORITY = PurePosixPath("/run/sandbox/Xauthority")
X11_SOCKET_DIR = PurePosixPath(x11_display.SOCKET_DIR)  # the same path inside the container
# 0 = no timer: the server never expires the authorization on its own (Xext/security.c only
# arms the timer for a non-zero timeout). Revocation at teardown is what ends it.
UNTRUSTED_TIMEOUT = 0

# python-xlib reads $XAUTHORITY when it connects; this lock keeps the brief swap atomic.
_ENV_LOCK = threading.Lock()


@dataclass(frozen=True)
class X11Grant:
    """What the runtime mounts and sets: the socket and the private Xauthority, both read-only."""

    display: str  # ":99", the same number inside the container
    display_number: int
    socket_path: Path  # host socket, mounted read-only at container_socket_path
    container_socket_path: PurePosixPath
    xauthority_path: Path  # private file, mounted read-only at container_xauthority_path
    container_xauthority_path: PurePosixPath
    hostname: str  # the container must run with this hostname (FamilyLocal entry)
    trusted: bool
    authid: int | None  # SECURITY authorization id; None for a trusted grant

    @property
    def env(self) -> tuple[tuple[str, str], ...]:
        return (("DISPLAY", self.display), ("XAUTHORITY", str(self.container_xauthority_path)))


def display_number(display: str) -> int:
    """The display number of a local display (":99", ":99.0", "unix:99"); TCP is refused."""
    name = x11_display.parse_display(display)
    if isinstance(name, x11_display.DisplayName) and name.local:
        return name.number
    raise ProviderError(f"display.x11: display {display!r} is not a local display (expected ':N')")


@contextlib.contextmanager
def _xauthority_env(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    with _ENV_LOCK:
        old = os.environ.get("XAUTHORITY")
        os.environ["XAUTHORITY"] = str(path)
        try:
            yield
        finally:
            if old is None:
                del os.environ["XAUTHORITY"]
            else:
                os.environ["XAUTHORITY"] = old


def open_display(display: str, user_xauthority: Path | None) -> Any:
    """A python-xlib Display authenticated with the user's cookie; errors become ProviderError."""
    with _xauthority_env(user_xauthority):
        try:
            return xdisplay.Display(display)
        except (xerror.DisplayError, xerror.ConnectionClosedError, OSError) as exc:
            raise ComponentUnavailableError(
                f"display.x11: cannot connect to {display}: {exc}"
            ) from exc


def _server_identity(socket_path: Path) -> tuple[int, int, int]:
    """The X socket's inode and ctime: a restarted server has a new socket, so stale authids
    recorded for the old one are never revoked on the new one (ids get reused)."""
    try:
        st = socket_path.stat()
    except OSError as exc:
        raise ComponentUnavailableError(
            f"display.x11: no X socket at {socket_path}: {exc}"
        ) from exc
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def _write_private(path: Path, data: bytes, uid: int, gid: int) -> None:
    """Write `data` to a fresh 0600 file owned by uid:gid, never following a planted link."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ProviderError(f"display.x11: cannot create {path}: {exc}") from exc
    try:
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise ProviderError(f"display.x11: cannot write {path} for uid {uid}: {exc}") from exc
    os.close(fd)


def _entries_for(number: int, hostname: str, cookie: bytes) -> tuple[xauth.XauthEntry, ...]:
    # libXau clients take the wildcard; python-xlib clients only read the FamilyLocal entry
    # that names the container's hostname.
    return (
        xauth.XauthEntry(xauth.Family.WILD, b"", str(number), xauth.MIT_MAGIC_COOKIE, cookie),
        xauth.XauthEntry(
            xauth.Family.LOCAL, hostname.encode(), str(number), xauth.MIT_MAGIC_COOKIE, cookie
        ),
    )


def _user_cookie(path: Path | None, number: int) -> bytes:
    # The request carries the Xauthority the probe connected with; there is no second lookup.
    if path is None:
        raise ProviderError("display.x11-trusted: the X probe found no Xauthority file to read")
    try:
        entries = xauth.decode(path.read_bytes())
    except OSError as exc:
        raise ProviderError(f"display.x11-trusted: cannot read {path}: {exc}") from exc
    entry = xauth.find_cookie(entries, number, socket.gethostname().encode())
    if entry is None:
        raise ProviderError(
            f"display.x11-trusted: {path} holds no {xauth.MIT_MAGIC_COOKIE} for :{number}"
        )
    return entry.data


class _ErrorLog:
    """Collects X protocol errors so python-xlib does not print them."""

    def __init__(self) -> None:
        self.errors: list[Any] = []

    def __call__(self, err: Any, request: Any) -> None:
        self.errors.append(err)


class X11Provider:
    """display.x11 / display.x11-trusted for one instance: the request's X socket and a private
    Xauthority, both read-only. Untrusted setups hold a connection until teardown()."""

    def __init__(self, request: X11CookieRequest) -> None:
        self.request = request
        self.name = "display.x11-trusted" if request.trusted else "display.x11"
        self._conn: Any = None
        self._grant: X11Grant | None = None
        self._instance_dir: Path | None = None

    @property
    def grant(self) -> X11Grant | None:
        return self._grant

    def setup(self, ctx: ProviderContext) -> Grant:
        g = self._make(ctx)
        return Grant(
            mounts=(
                read_only_bind(g.socket_path, g.container_socket_path),
                read_only_bind(g.xauthority_path, g.container_xauthority_path),
            ),
            env=env_vars(g.env),
            hostname=g.hostname,
        )

    def _make(self, ctx: ProviderContext) -> X11Grant:
        if self._grant is not None:
            raise ProviderError("display.x11: this provider already holds a grant")
        request = self.request
        number = display_number(request.display)
        socket_path = Path(request.socket_path)
        if not socket_path.exists() or not stat.S_ISSOCK(socket_path.stat().st_mode):
            raise ComponentUnavailableError(f"display.x11: no X socket at {socket_path}")
        user_xauthority = Path(request.xauthority) if request.xauthority else None
        ctx.instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        xauthority_path = ctx.instance_dir / XAUTHORITY_FILE
        authid: int | None = None
        if request.trusted:
            cookie = _user_cookie(user_xauthority, number)
        else:
            cookie, authid = self._generate_untrusted(request.display, user_xauthority, number)
            _write_state(ctx.instance_dir, request, authid, _server_identity(socket_path))
        self._instance_dir = ctx.instance_dir
        try:
            _write_private(
                xauthority_path,
                xauth.encode(_entries_for(number, ctx.hostname, cookie)),
                ctx.uid,
                ctx.gid,
            )
        except ProviderError:
            self.teardown()
            raise
        self._grant = X11Grant(
            display=f":{number}",
            display_number=number,
            socket_path=socket_path,
            container_socket_path=X11_SOCKET_DIR / f"X{number}",
            xauthority_path=xauthority_path,
            container_xauthority_path=CONTAINER_XAUTHORITY,
            hostname=ctx.hostname,
            trusted=request.trusted,
            authid=authid,
        )
        return self._grant

    def _generate_untrusted(
        self, display: str, user_xauthority: Path | None, number: int
    ) -> tuple[bytes, int]:
        conn = open_display(display, user_xauthority)
        if not conn.has_extension("SECURITY"):
            conn.close()
            raise ProviderError(
                "display.x11 unavailable: the X server lacks the SECURITY extension"
            )
        try:
            reply = conn.security_generate_authorization(
                xauth.MIT_MAGIC_COOKIE,
                timeout=UNTRUSTED_TIMEOUT,
                trust_level=security.SecurityClientUntrusted,
            )
        except Exception as exc:  # python-xlib raises its own error classes on a bad reply
            conn.close()
            raise ProviderError(
                f"display.x11: SECURITY GenerateAuthorization failed: {exc}"
            ) from exc
        # Held until teardown: revocation needs it, and without a client the server could reset
        # and drop every SECURITY authorization.
        self._conn = conn
        return bytes(reply.auth_data_return), int(reply.authid)

    def teardown(self) -> None:
        """Revoke (live untrusted clients are cut off), disconnect, remove files. Idempotent."""
        conn, self._conn = self._conn, None
        grant, self._grant = self._grant, None
        if conn is not None:
            try:
                if grant is not None and grant.authid is not None:
                    _revoke_on(conn, grant.authid)
            finally:
                with contextlib.suppress(Exception):
                    conn.close()
        if self._instance_dir is not None:
            (self._instance_dir / XAUTHORITY_FILE).unlink(missing_ok=True)
            (self._instance_dir / STATE_FILE).unlink(missing_ok=True)
            self._instance_dir = None


def _revoke_on(conn: Any, authid: int) -> bool:
    """Revoke on an open connection; False when the server no longer knew the id."""
    log = _ErrorLog()
    conn.set_error_handler(log)
    conn.security_revoke_authorization(authid)
    conn.sync()
    return not log.errors


def _write_state(
    instance_dir: Path,
    request: X11CookieRequest,
    authid: int,
    server: tuple[int, int, int],
) -> None:
    state = {
        "display": request.display,
        "socket": request.socket_path,
        "authid": authid,
        "server": list(server),
    }
    provider_state.write_state(instance_dir / STATE_FILE, state)


@dataclass(frozen=True)
class X11State:
    """What a crashed launcher left in its instance dir for `sandbox gc`."""

    display: str
    socket_path: str  # the X socket the request named, as the provider used it
    authid: int
    server: tuple[int, int, int]


def _parse_state(raw: Any) -> X11State:
    dev, ino, ctime = (int(v) for v in raw["server"])
    display = str(raw["display"])
    # A state file left by a version before the socket was recorded names only the display.
    socket = raw.get("socket") or x11_display.socket_path(display_number(display))
    return X11State(display, str(socket), int(raw["authid"]), (dev, ino, ctime))


def read_state(instance_dir: Path) -> X11State | None:
    return provider_state.read_state(instance_dir / STATE_FILE, "X11", _parse_state)


def revoke(display: str, user_xauthority: Path | None, authid: int) -> bool:
    """Revoke an untrusted authorization from another process (gc after a SIGKILLed launcher).

    True if the server revoked it, False if it no longer existed.
    """
    conn = open_display(display, user_xauthority)
    try:
        if not conn.has_extension("SECURITY"):
            return False
        return _revoke_on(conn, authid)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def collect(instance_dir: Path, user_xauthority: Path | None) -> bool:
    """gc for one instance dir: revoke its recorded authorization if the same server still runs,
    then remove the files. True if something was revoked."""
    state = read_state(instance_dir)
    revoked = False
    if state is not None:
        socket_path = Path(state.socket_path)
        try:
            same_server = _server_identity(socket_path) == state.server
        except ProviderError:
            same_server = False  # no server: nothing left to revoke
        if same_server:
            revoked = revoke(state.display, user_xauthority, state.authid)
    (instance_dir / XAUTHORITY_FILE).unlink(missing_ok=True)
    (instance_dir / STATE_FILE).unlink(missing_ok=True)
    return revoked
