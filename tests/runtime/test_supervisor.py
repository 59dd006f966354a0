"""Unit tests of the detached supervisor's messages: one encoding, typed both ways."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sandbox.errors import (
    CgroupError,
    ComponentUnavailableError,
    EngineUnavailableError,
    LaunchError,
    ManifestError,
    ProviderError,
    SandboxError,
)
from sandbox.runtime import instances, supervisor
from sandbox.runtime.supervisor import Failed, Started


@pytest.mark.parametrize(
    "report",
    [
        Started(Path("/run/user/1000/sandbox/instances/0123456789ab")),
        Failed("audio: no server", ProviderError),
        Failed("cgroups: cannot create /sys/fs/cgroup/sandbox/x", CgroupError),
        Failed("image x not found", LaunchError),
    ],
)
def test_a_report_survives_the_pipe(report: supervisor.Report) -> None:
    assert supervisor.decode(supervisor.encode(report)) == report


def test_the_wire_format_is_the_documented_json() -> None:
    started = json.loads(supervisor.encode(Started(Path("/x/abc"))))
    assert started == {"instance_dir": "/x/abc"}
    failed = json.loads(supervisor.encode(Failed("boom", ProviderError)))
    assert failed == {"error": "boom", "kind": "ProviderError"}


@pytest.mark.parametrize(
    "exc",
    [
        ComponentUnavailableError("display.x11: no X socket at /tmp/.X11-unix/X9"),
        EngineUnavailableError("cannot connect to the container engine: no endpoint"),
    ],
)
def test_an_unavailable_host_stays_unavailable_across_the_pipe(exc: SandboxError) -> None:
    # A detached launch must end with the same exit status by cause as an attached one.
    from sandbox.cli import exit_code_for

    report = supervisor.decode(supervisor.encode(supervisor.failed(exc)))
    assert isinstance(report, Failed) and report.kind is type(exc)
    assert exit_code_for(report.kind(report.error)) == exit_code_for(exc) == 3


def test_a_subclass_arrives_as_its_nearest_listed_kind() -> None:
    class NoSliceError(CgroupError):
        pass

    assert supervisor.failed(NoSliceError("x")) == Failed("x", CgroupError)


def test_an_error_of_another_kind_arrives_as_a_launch_error() -> None:
    assert supervisor.failed(ManifestError("app.id", "bad")) == Failed("app.id: bad", LaunchError)
    assert supervisor.failed(KeyboardInterrupt()) == Failed("", LaunchError)
    assert supervisor.decode(b'{"error": "x", "kind": "OSError"}') == Failed("x", LaunchError)


@pytest.mark.parametrize("data", [b"", b"{}", b"not json", b"[1]", b'{"other": 1}'])
def test_no_report_decodes_to_none(data: bytes) -> None:
    assert supervisor.decode(data) is None


def test_started_instance_raises_what_the_supervisor_reported(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="cannot create"):
        supervisor.started_instance(Failed("cannot create", CgroupError))
    with pytest.raises(LaunchError, match="ended before the app started"):
        supervisor.started_instance(None)
    with pytest.raises(LaunchError, match="already gone"):
        supervisor.started_instance(Started(tmp_path / "gone"))


def test_started_instance_finds_the_promoted_instance(tmp_path: Path) -> None:
    base = tmp_path / "instances"
    os.mkdir(base)
    inst = instances.new_instance(base, instances.InstanceState("org.t.App", "", "1:1", 1.0, "i"))
    cid = "0123456789ab" + "d" * 52
    instances.promote(inst, cid)
    found, container_id = supervisor.started_instance(Started(inst.path))
    assert (found.path, container_id) == (inst.path, cid)
