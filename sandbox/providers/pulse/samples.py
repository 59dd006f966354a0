"""The shared sample cache, per app: names namespaced, counts and bytes capped; no sockets."""

# PulseAudio's sample cache is one namespace for every client of the server, and it outlives
# them: an upload under an existing name replaces that sample for everyone (the desktop's
# `bell-window-system`), and what an app uploads stays in the server's memory after it exits.
# So, through the proxy:
#
# * CREATE_UPLOAD_STREAM: the name is rewritten to `sandbox.<app-id>..<name>` (app ids never
#   contain "..", so no app's names can collide with another's or with the desktop's), and so
#   is the stream's media.name (pipewire-pulse names the sample after that), and the
#   upload is claimed in the app's ledger: at most `max_samples` names and `max_bytes` declared
#   bytes per app, over all its instances (the server allocates exactly the declared length).
#   Past a cap: PA_ERR_TOOLARGE, nothing forwarded. A name counts from its upload request until
#   the app removes it or its instance ends, whether or not the upload completed.
# * PLAY_SAMPLE / REMOVE_SAMPLE of a name the app uploaded play or remove the app's own sample.
#   PLAY_SAMPLE of any other name passes unchanged (the desktop's event sounds); REMOVE_SAMPLE of
#   it is refused (PA_ERR_ACCESS), as is naming anything in the `sandbox.` namespace directly.
# * When a proxy stops, the names it claimed (and any left by a SIGKILLed instance of the app)
#   are removed from the server unless another running instance of the app still claims them
#   (proxy.py sends the REMOVE_SAMPLEs, cleanup.py).

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sandbox.errors import ProviderError
from sandbox.providers.pulse.protocol import ErrorCode
from sandbox.providers.pulse.rules import RefusedError
from sandbox.providers.pulse.tagstruct import (
    U32,
    ChannelMap,
    Proplist,
    SampleSpec,
    Str,
    Value,
    prop_str,
)

SAMPLE_PREFIX = "sandbox."
SAMPLE_SEPARATOR = ".."
DEFAULT_MAX_SAMPLES = 16
DEFAULT_MAX_SAMPLE_BYTES = 4 * 1024 * 1024
NAME_MAX = 127  # pa_namereg_is_valid_name: shorter than PA_NAME_MAX (128)
_VALID_NAME = re.compile(r"[A-Za-z0-9._-]+")
_UPLOAD_SHAPE = (Str, SampleSpec, ChannelMap, U32, Proplist)


def sample_name(app_id: str, name: str) -> str:
    """The server-side name of the app's sample `name`."""
    return f"{SAMPLE_PREFIX}{app_id}{SAMPLE_SEPARATOR}{name}"


class SampleLedger(Protocol):
    """The sample names (server-side) one app holds, with their declared sizes."""

    def claim(self, name: str, length: int) -> bool:
        """Count `name` (or its new size); False past a cap, and then nothing changes."""
        ...

    def known(self, name: str) -> bool:
        """Whether some instance of the app uploaded `name` and has not removed it."""
        ...

    def release(self, name: str) -> None:
        """This process no longer counts `name` (the app removed it itself)."""
        ...

    def collect(self) -> tuple[str, ...]:
        """At teardown: the names to remove from the server (held until finish)."""
        ...

    def finish(self, removed: bool) -> None:
        """After collect(): forget those names if `removed`, else leave them for a later try."""
        ...


# -- request rewriting ------------------------------------------------------------------------


def upload_args(args: tuple[Value, ...], app_id: str, ledger: SampleLedger) -> tuple[Value, ...]:
    """CREATE_UPLOAD_STREAM (name, spec, map, length, proplist) under the app's own name."""
    if len(args) != len(_UPLOAD_SHAPE) or not all(
        isinstance(v, t) for v, t in zip(args, _UPLOAD_SHAPE, strict=True)
    ):
        raise ProviderError("pulse: arguments of CREATE_UPLOAD_STREAM do not match its shape")
    name_arg, length_arg, props = args[0], args[3], args[4]
    assert isinstance(name_arg, Str) and isinstance(length_arg, U32)
    assert isinstance(props, Proplist)
    # A null name makes the server take event.id or media.name from the proplist: do the same
    # here, so the name is always the proxy's.
    name = name_arg.value or props.get_str("event.id") or props.get_str("media.name")
    if not name or not _VALID_NAME.fullmatch(name):
        raise RefusedError(ErrorCode.INVALID)
    full = sample_name(app_id, name)
    if len(full) > NAME_MAX or length_arg.value == 0:
        raise RefusedError(ErrorCode.INVALID)
    if not ledger.claim(full, length_arg.value):
        raise RefusedError(ErrorCode.TOOLARGE)
    # pipewire-pulse names the sample after the stream's media.name, not the name argument.
    kept = tuple((k, v) for k, v in props.items if k != "media.name")
    return (Str(full), *args[1:4], Proplist((*kept, ("media.name", prop_str(full)))))


def _own_name(name: str | None, app_id: str, ledger: SampleLedger) -> str | None:
    """The app's server-side name for `name` if it uploaded it; refused for `sandbox.*`."""
    if name is None:
        raise RefusedError(ErrorCode.INVALID)
    full = sample_name(app_id, name)
    if ledger.known(full):
        return full
    if name.startswith(SAMPLE_PREFIX):
        raise RefusedError(ErrorCode.ACCESS)  # another app's sample, or the namespace by hand
    return None


def play_args(args: tuple[Value, ...], app_id: str, ledger: SampleLedger) -> tuple[Value, ...]:
    """PLAY_SAMPLE (sink index, sink name, volume, name, proplist): own name, else as given."""
    name = args[3]
    assert isinstance(name, Str)
    full = _own_name(name.value, app_id, ledger)
    return args if full is None else (*args[:3], Str(full), *args[4:])


def remove_args(args: tuple[Value, ...], app_id: str, ledger: SampleLedger) -> tuple[Value, ...]:
    """REMOVE_SAMPLE (name): only a name the app uploaded."""
    name = args[0]
    assert isinstance(name, Str)
    full = _own_name(name.value, app_id, ledger)
    if full is None:
        raise RefusedError(ErrorCode.ACCESS)  # not the app's, whether it exists or not
    ledger.release(full)
    return (Str(full),)


# -- ledgers ----------------------------------------------------------------------------------


class MemoryLedger:
    """A SampleLedger for one process (tests, a proxy without a shared dir)."""

    def __init__(
        self, max_samples: int = DEFAULT_MAX_SAMPLES, max_bytes: int = DEFAULT_MAX_SAMPLE_BYTES
    ) -> None:
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.claims: dict[str, int] = {}

    def claim(self, name: str, length: int) -> bool:
        old = self.claims.get(name)
        count = len(self.claims) + (old is None)
        total = sum(self.claims.values()) - (old or 0) + max(length, old or 0)
        if count > self.max_samples or total > self.max_bytes:
            return False
        self.claims[name] = max(length, old or 0)
        return True

    def known(self, name: str) -> bool:
        return name in self.claims

    def release(self, name: str) -> None:
        self.claims.pop(name, None)

    def collect(self) -> tuple[str, ...]:
        """The names to remove from the server now that this process stops."""
        return tuple(self.claims)

    def finish(self, removed: bool) -> None:
        self.claims.clear()


@dataclass(frozen=True, slots=True)
class _Slot:
    """One slot file's record: the sample `name` of `length` declared bytes."""

    index: int
    name: str
    length: int


@dataclass(frozen=True, slots=True)
class _Held:
    """A slot this process holds: the open file whose flock is the hold."""

    fd: int
    index: int
    length: int


def _parse_slot(index: int, text: str) -> _Slot | None:
    """`<length> <name>`; anything else (empty, torn, foreign) is None."""
    length, _, name = text.strip().partition(" ")
    if not length.isdigit() or not _VALID_NAME.fullmatch(name):
        return None
    return _Slot(index, name, int(length))


class SlotLedger:
    """A SampleLedger shared by every process that serves one app (instances, supervisors).

    Slot i is `<directory>/<i>.slot` holding `<length> <name>`; a process holds a name by an
    flock on its slot, as SlotBudget holds a stream, so there are at most `max_samples` names.
    A slot with a name and no holder is a leftover of a process that died (SIGKILL): it still
    counts, and the next proxy of the app to start or stop removes that sample from the server
    (collect/finish). `<directory>/lock` serialises the claims of all the app's processes.
    """

    def __init__(
        self,
        directory: Path,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        max_bytes: int = DEFAULT_MAX_SAMPLE_BYTES,
    ) -> None:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ProviderError(f"pulse: cannot create {directory}: {exc}") from exc
        self.directory = directory
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self._own: dict[str, _Held] = {}
        self._collected: list[int] = []  # fds of the slots collect() took, until finish()

    # -- SampleLedger --

    def claim(self, name: str, length: int) -> bool:
        with self._locked():
            held = self._own.get(name)
            others, free = self._scan(want_free=held is None)
            slot = held or free
            length = max(length, held.length if held else 0)
            mine = sum(h.length for n, h in self._own.items() if n != name)
            total = sum(s.length for s in others) + mine + length
            if slot is None or total > self.max_bytes:
                if free is not None:
                    os.close(free.fd)
                return False
            _write(slot.fd, f"{length} {name}\n")
            self._own[name] = _Held(slot.fd, slot.index, length)
            return True

    def known(self, name: str) -> bool:
        if name in self._own:
            return True
        try:
            entries = [e for e in os.scandir(self.directory) if e.name.endswith(".slot")]
            # Only slots with a record are read: a PLAY_SAMPLE of a desktop sound stays cheap.
            paths = [e.path for e in entries if e.stat().st_size]
        except OSError:
            return False
        for path in paths:
            with contextlib.suppress(OSError), open(path, "rb") as f:
                slot = _parse_slot(0, f.read(4096).decode("ascii", "replace"))
                if slot is not None and slot.name == name:
                    return True
        return False

    def release(self, name: str) -> None:
        held = self._own.pop(name, None)
        if held is not None:
            with self._locked():
                _write(held.fd, "")
                os.close(held.fd)

    # -- teardown --

    def collect(self) -> tuple[str, ...]:
        """Names to remove from the server: this process's and dead processes' that no running
        process claims. Their slots stay held until finish()."""
        with self._locked():
            live: set[str] = set()
            names = list(self._own)
            self._collected = [h.fd for h in self._own.values()]
            own = {h.index for h in self._own.values()}
            self._own.clear()
            for i in range(self.max_samples):
                fd = None if i in own else self._open(i)
                if fd is None:
                    continue
                slot = _parse_slot(i, _read(fd))
                if slot is not None and _try_lock(fd):
                    self._collected.append(fd)  # a dead process's: ours to clean up now
                    names.append(slot.name)
                    continue
                if slot is not None:
                    live.add(slot.name)  # a running instance still has it
                os.close(fd)
            return tuple(dict.fromkeys(n for n in names if n not in live))

    def finish(self, removed: bool) -> None:
        """Give back what collect() took; its records are cleared only if the server removed
        the samples (else the next proxy of the app tries again)."""
        with self._locked():
            for fd in self._collected:
                if removed:
                    _write(fd, "")
                os.close(fd)
            self._collected.clear()

    # -- files --

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ProviderError(f"pulse: cannot open {self.directory}/lock: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _open(self, index: int) -> int | None:
        try:
            return os.open(
                self.directory / f"{index}.slot", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError:
            return None

    def _scan(self, want_free: bool) -> tuple[list[_Slot], _Held | None]:
        """The slots other processes hold or left, and one free slot, locked (if wanted)."""
        used: list[_Slot] = []
        free: _Held | None = None
        own = {h.index for h in self._own.values()}
        for i in range(self.max_samples):
            fd = None if i in own else self._open(i)
            if fd is None:
                if i not in own:
                    used.append(_Slot(i, "", 0))  # unreadable: taken (fail closed)
                continue
            slot = _parse_slot(i, _read(fd))
            if slot is None and _try_lock(fd):
                if want_free and free is None:
                    free = _Held(fd, i, 0)
                else:
                    os.close(fd)
                continue
            used.append(slot or _Slot(i, "", 0))
            os.close(fd)
        return used, free


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("ascii", "replace")
    except OSError:
        return ""


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("ascii"), 0)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
