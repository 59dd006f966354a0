"""`sandbox ps --json`, `attribute --json` and `data --json/--purge`: field names and exit codes,
over a private runtime root and data home (no engine needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.runtime import instances

APP = "org.sandboxtest.CliJson"
CID = "0123456789ab" + "c" * 52  # no such container: ps reads instance dirs, not the engine


def _sandbox(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *argv],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    out["XDG_RUNTIME_DIR"] = str(runtime)
    out["XDG_DATA_HOME"] = str(tmp_path / "data")
    return out


def test_ps_json_lists_an_instance_with_the_documented_fields(env: dict[str, str]) -> None:
    base = instances.instances_dir(os.geteuid(), env)
    state = instances.InstanceState(
        app_id=APP, instance_id="", launcher=instances.launcher_token(), created=1700000000.5,
        image="sandbox-test/cli", uid=os.getuid(),
    )  # fmt: skip
    inst = instances.new_instance(base, state)
    instances.promote(inst, CID)
    instances.new_instance(base, instances.InstanceState(APP, "", "1:1", 1.0, "img"))  # pending

    proc = _sandbox(env, "ps", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 1  # a pending instance has no container yet: not listed
    [row] = rows
    assert {"app_id", "instance_id", "container_id", "started", "pids"} <= set(row)
    assert (row["app_id"], row["instance_id"], row["container_id"]) == (APP, CID[:12], CID)
    assert row["started"].startswith("2023-11-14T22:13:20.5")  # ISO 8601, UTC
    assert row["started"].endswith("+00:00")
    assert row["pids"] == []  # no cgroup holds that container


def test_ps_json_with_no_instance_is_an_empty_list(env: dict[str, str]) -> None:
    proc = _sandbox(env, "ps", "--json")
    assert (proc.returncode, json.loads(proc.stdout)) == (0, [])


def test_attribute_json_of_a_host_process_is_null(env: dict[str, str]) -> None:
    proc = _sandbox(env, "attribute", str(os.getpid()), "--json")
    assert (proc.returncode, proc.stdout.strip()) == (0, "null")


@pytest.mark.parametrize("bad", ["abc", "0", "12x", "٣"])
def test_attribute_of_a_bad_pid_is_a_usage_error(env: dict[str, str], bad: str) -> None:
    proc = _sandbox(env, "attribute", bad, "--json")
    assert proc.returncode == 2
    assert "PID" in proc.stderr and repr(bad) in proc.stderr
    assert proc.stdout == ""


def _saves(env: dict[str, str]) -> Path:
    saves = Path(env["XDG_DATA_HOME"]) / "sandbox" / "apps" / APP / "saves"
    saves.mkdir(parents=True)
    (saves / "slot1").write_bytes(b"x" * 10000)
    (Path(env["XDG_DATA_HOME"]) / "sandbox" / "apps" / APP / "config").mkdir()
    return saves


def test_data_json_lists_each_storage_dir_with_its_size(env: dict[str, str]) -> None:
    saves = _saves(env)
    proc = _sandbox(env, "data", APP, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == ["config", "saves"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["saves"]["path"] == str(saves)
    assert by_name["saves"]["size_bytes"] >= 10000
    assert by_name["config"]["size_bytes"] == 0


def test_data_purge_yes_removes_only_that_app(env: dict[str, str]) -> None:
    saves = _saves(env)
    other = Path(env["XDG_DATA_HOME"]) / "sandbox" / "apps" / "org.sandboxtest.Other" / "saves"
    other.mkdir(parents=True)
    proc = _sandbox(env, "data", APP, "--purge")
    assert proc.returncode == 2 and "--yes" in proc.stderr  # no terminal to ask on
    assert saves.exists()
    proc = _sandbox(env, "data", APP, "--purge", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert f"removed {saves}" in proc.stdout.splitlines()
    assert not saves.parent.exists() and other.exists()
    proc = _sandbox(env, "data", APP, "--json")
    assert (proc.returncode, json.loads(proc.stdout)) == (0, [])


def test_data_of_a_bad_app_id_is_a_usage_error(env: dict[str, str]) -> None:
    proc = _sandbox(env, "data", "../etc", "--json")
    assert proc.returncode == 2 and proc.stdout == ""
