"""App-wide limits and gc of app slices with the systemd cgroup driver, through systemctl only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sandbox.errors import CgroupError
from sandbox.host.names import (
    SYSTEMD_ROOT_SLICE,
    SYSTEMD_SLICE_PREFIX,
    SYSTEMD_SLICE_SUFFIX,
    app_slice_name,
    is_valid_app_id,
    systemd_unescape,
)
from sandbox.policy.plan import Limits

# With the systemd driver the engine asks systemd for `sandbox.slice/sandbox-<app>.slice/
# docker-<id>.scope`; files under /sys/fs/cgroup belong to systemd there, so the app-wide
# limits go on the slice unit as properties. `--runtime` keeps them in /run (gone at reboot,
# like the slice itself); `revert` removes those drop-ins again at gc.
#
# UNTESTED on a real systemd host: the development machine has no systemd. The commands are
# unit-tested exactly (tests/runtime/test_systemd.py); see docs/runtime.md.

SYSTEMCTL = "systemctl"
CPU_PERCENT_PER_CPU = 100


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


# run(argv) -> CommandResult; the default spawns the real systemctl, tests pass a recorder.
Runner = Callable[[tuple[str, ...]], CommandResult]


def run_systemctl(argv: tuple[str, ...]) -> CommandResult:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CgroupError(f"cgroups: cannot run {' '.join(argv[:2])}: {exc}") from exc
    return CommandResult(done.returncode, done.stdout, done.stderr)


# --- pure: the exact commands -------------------------------------------------------------------


def slice_properties(limits: Limits) -> tuple[str, ...]:
    """The unit properties that hold the app-wide limits (swap off, as with cgroupfs)."""
    percent = max(1, round(limits.cpus * CPU_PERCENT_PER_CPU))
    return (
        f"MemoryMax={limits.memory_bytes}",
        "MemorySwapMax=0",
        f"CPUQuota={percent}%",
        f"TasksMax={limits.pids}",
    )


def set_limits_command(slice_name: str, limits: Limits) -> tuple[str, ...]:
    return (SYSTEMCTL, "set-property", "--runtime", slice_name, *slice_properties(limits))


def list_slices_command() -> tuple[str, ...]:
    pattern = f"{SYSTEMD_SLICE_PREFIX}*{SYSTEMD_SLICE_SUFFIX}"
    return (
        SYSTEMCTL, "list-units", "--type=slice", "--all", "--plain", "--no-legend",
        "--no-pager", pattern,
    )  # fmt: skip


def remove_slice_commands(slice_name: str) -> tuple[tuple[str, ...], ...]:
    """Stop the (empty) slice, then drop the runtime drop-ins set_limits_command wrote."""
    return ((SYSTEMCTL, "stop", slice_name), (SYSTEMCTL, "revert", slice_name))


def app_of_slice(slice_name: str) -> str | None:
    """`sandbox-<escaped app id>.slice` -> the app id; None for any other unit name."""
    if not (
        slice_name.startswith(SYSTEMD_SLICE_PREFIX) and slice_name.endswith(SYSTEMD_SLICE_SUFFIX)
    ):
        return None
    app_id = systemd_unescape(slice_name[len(SYSTEMD_SLICE_PREFIX) : -len(SYSTEMD_SLICE_SUFFIX)])
    return app_id if app_id is not None and is_valid_app_id(app_id) else None


def parse_slice_list(stdout: str) -> tuple[str, ...]:
    """App ids from `list-units --plain --no-legend` (first column is the unit name)."""
    found = []
    for line in stdout.splitlines():
        fields = line.split()
        app_id = app_of_slice(fields[0]) if fields else None
        if app_id is not None:
            found.append(app_id)
    return tuple(sorted(set(found)))


# --- I/O -----------------------------------------------------------------------------------------


def _check(result: CommandResult, argv: tuple[str, ...]) -> None:
    if result.returncode != 0:
        raise CgroupError(
            f"cgroups: `{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}"
        )


def apply_slice_limits(app_id: str, limits: Limits, run: Runner = run_systemctl) -> None:
    """Set the app-wide limits on the app's slice (systemd loads an absent slice implicitly)."""
    argv = set_limits_command(app_slice_name(app_id), limits)
    _check(run(argv), argv)


def slice_in_use(app_id: str, cgroup_mounts: Iterable[str]) -> bool:
    """True while the slice holds a scope (a container) or a process in any hierarchy."""
    from sandbox.runtime.cgroups import dir_in_use

    for mount in cgroup_mounts:
        path = os.path.join(mount, SYSTEMD_ROOT_SLICE, app_slice_name(app_id))
        if dir_in_use(path):
            return True
    return False


def remove_slice(app_id: str, run: Runner = run_systemctl) -> None:
    for argv in remove_slice_commands(app_slice_name(app_id)):
        _check(run(argv), argv)


def list_app_slices(run: Runner = run_systemctl) -> tuple[str, ...]:
    argv = list_slices_command()
    result = run(argv)
    _check(result, argv)
    return parse_slice_list(result.stdout)
