"""Instance dirs, their state.json and launcher liveness; file I/O only, no engine calls."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sandbox.errors import LaunchError
from sandbox.fileutil import write_atomic
from sandbox.host.runtime_dirs import runtime_root

STATE_FILE = "state.json"
PENDING_PREFIX = ".pending-"


def instances_dir(uid: int, env: Mapping[str, str] | None = None) -> Path:
    """<runtime root>/instances, made 0700 with the root; refused unless this user owns both."""
    root = runtime_root(uid, env)
    path = root / "instances"
    for p in (root, path):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            st = os.lstat(p)
            if not os.path.isdir(p) or os.path.islink(p) or st.st_uid != os.geteuid():
                raise LaunchError(
                    f"{p} is not a directory of this user; refusing to use it"
                ) from None
        except OSError as exc:
            raise LaunchError(f"cannot create {p}: {exc.strerror or exc}") from exc
    return path


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid, names one process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after its last ')'
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def launcher_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{process_start_time(pid) or 0}"


def launcher_alive(token: str) -> bool:
    """Whether the process a launcher token names still runs (a reused pid does not count)."""
    pid_text, _, start_text = token.partition(":")
    if not pid_text.isdigit():
        return False
    start = process_start_time(int(pid_text))
    return start is not None and str(start) == start_text


@dataclass
class InstanceState:
    app_id: str
    instance_id: str  # the container's short id once it exists; the pending token before
    launcher: str  # launcher_token()
    created: float
    image: str
    container_id: str | None = None
    engine: str | None = None  # the engine URL, so gc and stop reach the same engine
    uid: int = -1
    xauthority: str | None = None
    providers: list[str] = field(default_factory=list)
    # --detach: `launcher` names the supervisor process that owns the providers and teardown
    detached: bool = False

    @property
    def launcher_pid(self) -> int:
        pid = self.launcher.removeprefix("detached:").partition(":")[0]
        return int(pid) if pid.isdigit() else 0


@dataclass(frozen=True)
class StateDrift:
    """How a state.json differs from this version's InstanceState: keys it lacks or adds."""

    missing: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.unknown)

    @property
    def launcher_unknown(self) -> bool:
        """Without its launcher token nobody can tell whether the instance is still in use."""
        return "launcher" in self.missing

    def __str__(self) -> str:
        parts = [f"lacks {', '.join(self.missing)}"] if self.missing else []
        parts += [f"has unknown {', '.join(self.unknown)}"] if self.unknown else []
        return f"{STATE_FILE} " + "; ".join(parts)


@dataclass
class Instance:
    """One instance dir on disk and its state."""

    path: Path
    state: InstanceState
    drift: StateDrift = StateDrift()  # a file another version wrote is still found, and says so

    def save(self) -> None:
        data = json.dumps(asdict(self.state), indent=2)
        write_atomic(self.path / STATE_FILE, data.encode("utf-8"))


def new_instance(base: Path, state: InstanceState) -> Instance:
    """A fresh pending dir (0700); renamed to the instance id once the container exists."""
    token = secrets.token_hex(6)
    path = base / f"{PENDING_PREFIX}{token}"
    os.mkdir(path, 0o700)
    state.instance_id = f"{PENDING_PREFIX}{token}"
    inst = Instance(path, state)
    inst.save()
    return inst


def promote(inst: Instance, container_id: str) -> None:
    """Rename the pending dir to the instance id (the short container id, which is also what
    app_for_pid reports) and leave the pending name as a link: the container's bind mounts
    were given paths under the pending name and are resolved when it starts."""
    short = container_id[:12]
    final = inst.path.parent / short
    os.rename(inst.path, final)
    os.symlink(short, inst.path)
    inst.state.container_id = container_id
    inst.state.instance_id = short
    inst.path = final
    inst.save()


# Stand-ins for required keys a drifted state.json lacks; an empty launcher token never runs.
_STAND_INS: dict[str, object] = {"app_id": "", "launcher": "", "created": 0.0, "image": ""}


def _required(f: Field[Any]) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def parse_state(raw: Mapping[str, Any], dir_name: str) -> tuple[InstanceState, StateDrift]:
    """The state a state.json holds, tolerating keys added or dropped by another version."""
    known = {f.name for f in fields(InstanceState)}
    required = [f.name for f in fields(InstanceState) if _required(f)]
    missing = tuple(k for k in required if k not in raw)
    unknown = tuple(sorted(k for k in raw if k not in known))
    stand_ins = {**_STAND_INS, "instance_id": dir_name}
    values: dict[str, Any] = {k: stand_ins[k] for k in missing}
    values.update((k, v) for k, v in raw.items() if k in known)
    return InstanceState(**values), StateDrift(missing, unknown)


def load(path: Path) -> Instance | None:
    """The instance at `path`; None when its state.json is absent or not a JSON object."""
    try:
        raw = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    state, drift = parse_state(raw, path.name)
    return Instance(path, state, drift)


def list_instances(base: Path) -> list[Instance]:
    """Every instance dir (pending ones too) whose state.json reads, drifted ones included;
    links are skipped."""
    out: list[Instance] = []
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except FileNotFoundError:
        return out
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            inst = load(Path(e.path))
            if inst is not None:
                out.append(inst)
    return out


def remove_instance_dir(inst: Instance) -> None:
    """Remove the dir and any pending-name link pointing at it."""
    base = inst.path.parent
    with contextlib.suppress(FileNotFoundError):
        for e in os.scandir(base):
            if e.name.startswith(PENDING_PREFIX) and e.is_symlink():
                with contextlib.suppress(OSError):
                    if os.readlink(e.path) == inst.path.name:
                        os.unlink(e.path)
    shutil.rmtree(inst.path, ignore_errors=True)


def remove_dangling_links(base: Path) -> int:
    count = 0
    with contextlib.suppress(FileNotFoundError):
        for e in os.scandir(base):
            if e.is_symlink() and not os.path.exists(e.path):
                with contextlib.suppress(OSError):
                    os.unlink(e.path)
                    count += 1
    return count


def now() -> float:
    return time.time()
