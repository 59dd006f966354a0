"""Unit tests of instance state files: one another version wrote is still found, never dropped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sandbox.runtime import gc, instances

APP = "org.sandboxtest.Drift"
DEAD = "1:1"  # pid 1 started at tick 1: never this process, so never alive
NO_ENGINE = "unix:///nonexistent/sandbox-test.sock"  # gc must not need an engine here


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return instances.instances_dir(os.geteuid())


def _state_file(base: Path, name: str, raw: dict[str, object]) -> Path:
    path = base / name
    path.mkdir(mode=0o700)
    (path / instances.STATE_FILE).write_text(json.dumps(raw), encoding="utf-8")
    return path


def _full(**extra: object) -> dict[str, object]:
    return {
        "app_id": APP, "instance_id": "abc", "launcher": DEAD, "created": 1.0, "image": "img",
        "engine": NO_ENGINE, **extra,
    }  # fmt: skip


def test_a_state_file_this_version_wrote_has_no_drift(base: Path) -> None:
    inst = instances.new_instance(base, instances.InstanceState(APP, "", DEAD, 1.0, "img"))
    [found] = instances.list_instances(base)
    assert found.path == inst.path and found.state == inst.state
    assert not found.drift.drifted


def test_unknown_keys_are_kept_out_of_the_state_and_named(base: Path) -> None:
    _state_file(base, "abc", _full(session_bus="/run/bus", zz=1))
    [found] = instances.list_instances(base)
    assert (found.state.app_id, found.state.launcher, found.state.engine) == (APP, DEAD, NO_ENGINE)
    assert found.drift == instances.StateDrift(missing=(), unknown=("session_bus", "zz"))
    assert str(found.drift) == "state.json has unknown session_bus, zz"


def test_missing_keys_get_stand_ins_and_are_named(base: Path) -> None:
    raw = _full()
    del raw["image"], raw["instance_id"]
    _state_file(base, "abc", raw)
    [found] = instances.list_instances(base)
    assert (found.state.image, found.state.instance_id) == ("", "abc")  # the dir's name
    assert found.drift.missing == ("instance_id", "image")
    assert not found.drift.launcher_unknown


def test_a_state_file_that_is_not_an_object_is_not_an_instance(base: Path) -> None:
    _state_file(base, "abc", {}).joinpath(instances.STATE_FILE).write_text("[1, 2]")
    assert instances.list_instances(base) == []


def test_gc_cleans_an_instance_whose_state_has_unknown_keys(base: Path) -> None:
    path = _state_file(base, "abc", _full(from_a_newer_version=True))
    report = gc.GcReport()
    assert gc.sweep_instances(base, report) == (NO_ENGINE,)
    assert report.instance_dirs == ["abc"] and not report.problems
    assert not path.exists()


def test_gc_reports_and_keeps_an_instance_without_a_launcher(base: Path) -> None:
    raw = _full()
    del raw["launcher"]
    path = _state_file(base, "abc", raw)
    report = gc.GcReport()
    gc.sweep_instances(base, report)
    assert report.instance_dirs == []
    assert report.problems == ["abc: state.json lacks launcher: left in place"]
    assert path.exists()  # nothing says whether its launcher still runs
