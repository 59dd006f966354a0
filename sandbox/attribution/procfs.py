"""Which app a host pid belongs to, from /proc/<pid>/cgroup alone; never asks the engine."""

from __future__ import annotations

import enum
import errno
import os
import re
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.errors import ProbeError
from sandbox.host.names import (
    CGROUP_ROOT,
    SYSTEMD_ROOT_SLICE,
    is_valid_app_id,
    systemd_unescape,
)

# The layouts this file accepts; anything else is "unknown" (None), never a guess.
#   cgroupfs driver:  /sandbox/<app-id>/<leaf>[/<below>...]
#                     leaf = <64 hex> (docker) | libpod-<64 hex> (podman)
#   systemd driver:   /sandbox.slice/sandbox-<systemd-escaped app-id>.slice/<leaf>[/<below>...]
#                     leaf = docker-<64 hex>.scope | libpod-<64 hex>.scope
# Components below the leaf are sub-cgroups inside the container's own subtree (systemd or a
# nested engine in the app); only the app (or its engine) can create them, so they stay the
# app's. Podman's `libpod-conmon-<id>.scope` holds the engine's monitor, not app code: None.
# The path is the same on every line of a v1, v2 or hybrid file; each line that lies under
# the sandbox root must name the same container, and lines outside it are ignored (a host
# may have hierarchies the engine does not join).
_CGROUPFS_RE = re.compile(r"/sandbox/([^/]+)/(?:libpod-)?([0-9a-f]{64})(?:/[^/]+)*")
_SYSTEMD_RE = re.compile(
    r"/sandbox\.slice/sandbox-([^/]+)\.slice/(?:docker|libpod)-([0-9a-f]{64})\.scope(?:/[^/]+)*"
)
_CGROUPFS_PREFIX = f"/{CGROUP_ROOT}"
_SYSTEMD_PREFIX = f"/{SYSTEMD_ROOT_SLICE}"
SHORT_ID_LEN = 12  # docker's short id, shown by `docker ps`


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """The app a process belongs to; one instance is one container, named by its short id."""

    app_id: str
    instance_id: str
    container_id: str


def _under_sandbox_root(path: str) -> bool:
    for prefix in (_CGROUPFS_PREFIX, _SYSTEMD_PREFIX):
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return True
    return False


def parse_cgroup_path(path: str) -> AppIdentity | None:
    """The identity one cgroup path names, or None when it is not exactly a sandbox layout."""
    match = _CGROUPFS_RE.fullmatch(path)
    if match is not None:
        app_id: str | None = match.group(1)
    else:
        match = _SYSTEMD_RE.fullmatch(path)
        if match is None:
            return None
        app_id = systemd_unescape(match.group(1))
    if app_id is None or not is_valid_app_id(app_id):
        return None
    container_id = match.group(2)
    return AppIdentity(app_id, container_id[:SHORT_ID_LEN], container_id)


def parse_cgroup_file(text: str) -> AppIdentity | None:
    """The identity a whole /proc/<pid>/cgroup names (v1, v2 or hybrid), or None if unknown."""
    found: AppIdentity | None = None
    last_path: str | None = None
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split(":", 2)
        if len(fields) != 3:
            return None
        path = fields[2]
        if path == last_path:
            continue  # v1 usually repeats one path on every line; parse it once
        last_path = path
        if not _under_sandbox_root(path):
            continue
        identity = parse_cgroup_path(path)
        if identity is None or (found is not None and identity != found):
            return None
        found = identity
    return found


def _check_pid(pid: int) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ProbeError(f"pid {pid!r}: not a positive integer")
    return pid


def read_cgroup_file(pid: int) -> str | None:
    """The text of /proc/<pid>/cgroup, or None when the process does not exist (any more)."""
    try:
        with open(f"/proc/{_check_pid(pid)}/cgroup", encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return None
        # e.g. /proc mounted with hidepid: "unknown" must not read as "a host process"
        raise ProbeError(f"pid {pid}: cannot read /proc/{pid}/cgroup: {exc.strerror}") from exc


def app_for_pid(pid: int) -> AppIdentity | None:
    """The app whose container holds host pid `pid`; None for host processes and gone pids."""
    text = read_cgroup_file(pid)
    return None if text is None else parse_cgroup_file(text)


class Validation(enum.Enum):
    """How AttributionCache knows a cached pid still names the same process."""

    PIDFD = "pidfd"  # exact: an entry lives exactly as long as its process (one poll per hit)
    TTL = "ttl"  # cheapest: trust an entry for ttl_s; a pid reused within ttl_s is misattributed


@dataclass(slots=True)
class _Entry:
    identity: AppIdentity | None
    expires: float
    pidfd: int


class AttributionCache:
    """app_for_pid with a bounded cache for services that look up the same peers often.

    A container cannot move its processes out of its cgroup, so a live process keeps its
    identity; what can go wrong is pid reuse. PIDFD mode holds a pidfd per entry and drops the
    entry once that process has exited; TTL mode trusts an entry for `ttl_s` seconds.
    """

    def __init__(
        self,
        validation: Validation = Validation.PIDFD,
        ttl_s: float = 1.0,
        max_entries: int = 1024,
        lookup: Callable[[int], AppIdentity | None] = app_for_pid,
    ) -> None:
        if max_entries < 1:
            raise ProbeError(f"max_entries {max_entries}: must be at least 1")
        if validation is Validation.TTL and ttl_s <= 0:
            raise ProbeError(f"ttl_s {ttl_s}: must be positive")
        self._validation = validation
        self._ttl_s = ttl_s
        self._max = max_entries
        self._lookup = lookup
        self._entries: dict[int, _Entry] = {}

    def __enter__(self) -> AttributionCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, pid: int) -> AppIdentity | None:
        entry = self._entries.get(pid)
        if entry is not None:
            if self._still_valid(entry):
                return entry.identity
            self.forget(pid)
        return self._fill(pid)

    def forget(self, pid: int) -> None:
        entry = self._entries.pop(pid, None)
        if entry is not None and entry.pidfd >= 0:
            os.close(entry.pidfd)

    def clear(self) -> None:
        for pid in list(self._entries):
            self.forget(pid)

    def _still_valid(self, entry: _Entry) -> bool:
        if entry.pidfd >= 0:
            # a pidfd turns readable when its process exits; zero timeout never blocks
            readable, _, _ = select.select((entry.pidfd,), (), (), 0)
            return not readable
        return time.monotonic() < entry.expires

    def _fill(self, pid: int) -> AppIdentity | None:
        _check_pid(pid)
        pidfd = -1
        if self._validation is Validation.PIDFD:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return None
            except OSError as exc:
                raise ProbeError(f"pid {pid}: pidfd_open failed: {exc.strerror}") from exc
        try:
            identity = self._lookup(pid)
            if pidfd >= 0 and select.select((pidfd,), (), (), 0)[0]:
                # it exited while we read: the text may belong to a newer process on that pid
                os.close(pidfd)
                return None
        except BaseException:
            if pidfd >= 0:
                os.close(pidfd)
            raise
        if len(self._entries) >= self._max:
            self.forget(next(iter(self._entries)))  # oldest first; dicts keep insertion order
        self._entries[pid] = _Entry(identity, time.monotonic() + self._ttl_s, pidfd)
        return identity
