"""Unit tests of the systemd driver's slice commands: exact argv, parsing, error translation."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import CgroupError
from sandbox.policy.plan import Limits
from sandbox.runtime import systemd
from sandbox.runtime.systemd import CommandResult

APP = "com.example.Game"
SLICE = "sandbox-com.example.Game.slice"


class Recorder:
    def __init__(self, *results: CommandResult) -> None:
        self.calls: list[tuple[str, ...]] = []
        self._results = list(results)

    def __call__(self, argv: tuple[str, ...]) -> CommandResult:
        self.calls.append(argv)
        return self._results.pop(0) if self._results else CommandResult(0, "", "")


def test_limits_become_exact_set_property_runtime() -> None:
    run = Recorder()
    systemd.apply_slice_limits(APP, Limits(memory_bytes=512 << 20, cpus=1.5, pids=256), run)
    assert run.calls == [
        (
            "systemctl", "set-property", "--runtime", SLICE,
            f"MemoryMax={512 << 20}", "MemorySwapMax=0", "CPUQuota=150%", "TasksMax=256",
        )
    ]  # fmt: skip


def test_tiny_cpu_share_still_sets_a_quota() -> None:
    assert "CPUQuota=1%" in systemd.slice_properties(Limits(cpus=0.001))


def test_escaped_app_id_names_the_slice() -> None:
    run = Recorder()
    systemd.apply_slice_limits("org.example.my-app", Limits(), run)
    assert run.calls[0][3] == "sandbox-org.example.my\\x2dapp.slice"


def test_failure_names_the_command_and_systemd_message() -> None:
    run = Recorder(CommandResult(1, "", "Failed to set unit properties: Access denied\n"))
    with pytest.raises(CgroupError, match=r"set-property.*Access denied"):
        systemd.apply_slice_limits(APP, Limits(), run)


def test_remove_stops_then_reverts() -> None:
    run = Recorder()
    systemd.remove_slice(APP, run)
    assert run.calls == [("systemctl", "stop", SLICE), ("systemctl", "revert", SLICE)]


def test_list_parses_only_canonical_app_slices() -> None:
    listing = (
        f"{SLICE} loaded active active Slice /sandbox/com.example.Game\n"
        "sandbox-org.example.my\\x2dapp.slice loaded active active x\n"
        "sandbox-not-canonical.slice loaded active active x\n"  # '-' means nesting
        "sandbox-bad\\x2f.slice loaded inactive dead x\n"  # not a valid app id
        "system.slice loaded active active System Slice\n"
        "\n"
    )
    run = Recorder(CommandResult(0, listing, ""))
    assert systemd.list_app_slices(run) == ("com.example.Game", "org.example.my-app")
    assert run.calls == [
        (
            "systemctl", "list-units", "--type=slice", "--all", "--plain", "--no-legend",
            "--no-pager", "sandbox-*.slice",
        )
    ]  # fmt: skip


def test_app_of_slice_round_trips() -> None:
    assert systemd.app_of_slice(SLICE) == APP
    assert systemd.app_of_slice("sandbox.slice") is None
    assert systemd.app_of_slice("user-1000.slice") is None


def test_slice_in_use_reads_the_slice_dirs(tmp_path: Path) -> None:
    slice_dir = tmp_path / "sandbox.slice" / SLICE
    slice_dir.mkdir(parents=True)
    (slice_dir / "cgroup.procs").write_text("")
    assert not systemd.slice_in_use(APP, (str(tmp_path),))
    (slice_dir / "docker-abc.scope").mkdir()
    assert systemd.slice_in_use(APP, (str(tmp_path),))
    assert not systemd.slice_in_use(APP, (str(tmp_path / "absent"),))
