"""`sandbox plan` and `sandbox override` end to end, with the host probe replaced by fixed facts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "policy"))
from engine_support import desktop

from sandbox.cli import EXIT_USAGE, main

GAME = """
manifest-version = 1
[app]
id = "com.example.Game"
name = "Example Game"
version = "1.2.0"
command = ["/opt/game/bin/game"]
[capabilities]
display = "wayland-or-x11"
audio = ["playback"]
gpu = true
network = true
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("sandbox.cli.plan_cmd.probe_host", desktop)
    (tmp_path / "site").mkdir()
    (tmp_path / "game.toml").write_text(GAME)
    return tmp_path


def _plan(env: Path, *extra: str) -> list[str]:
    return [
        "plan",
        str(env / "game.toml"),
        "--site-policy",
        str(env / "site"),
        "--overrides",
        str(env / "ov"),
        *extra,
    ]


def test_plan_prints_the_review(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_plan(env)) == 0
    out = capsys.readouterr().out
    assert "Wayland display — Wayland (wayland-1)" in out
    assert "Graphics card — Intel at /dev/dri/renderD128" in out


def test_plan_json_holds_review_and_plan(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_plan(env, "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["plan"]["hardening"]["network"] == "app"
    assert doc["plan"]["cgroup_parent"]["path"] == "/sandbox/com.example.Game"
    assert {r["kind"] for r in doc["plan"]["requests"]} == {
        "WaylandSocketRequest",
        "PulseProxyRequest",
    }
    assert doc["review"]["app"]["id"] == "com.example.Game"


def test_override_then_plan_then_site_denial(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ov = ["--overrides", str(env / "ov")]
    assert main(["override", "com.example.Game", "--revoke", "network", *ov]) == 0
    assert main(["override", "com.example.Game", "--grant", "gamepad", *ov]) == 0
    capsys.readouterr()
    assert main(_plan(env)) == 0
    out = capsys.readouterr().out
    assert "Network — revoked by you" in out
    assert "(granted by you; the app does not ask for it)" in out
    (env / "site" / "50.toml").write_text('[deny]\ncapabilities = ["gamepad"]\n')
    assert main(_plan(env)) == 0
    assert "Game controllers — denied by the site policy" in capsys.readouterr().out
    assert main(["override", "com.example.Game", "--reset", *ov]) == 0
    assert not (env / "ov" / "com.example.Game.toml").exists()


def test_bad_manifest_exits_2_naming_the_field(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "game.toml").write_text(GAME.replace("gpu = true", 'gpu = "yes"'))
    assert main(_plan(env)) == EXIT_USAGE
    assert "capabilities.gpu" in capsys.readouterr().err


def test_override_unknown_capability_exits_2(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ov = ["--overrides", str(env / "ov")]
    assert main(["override", "com.example.Game", "--grant", "camera", *ov]) == EXIT_USAGE
    assert "unknown capability 'camera'" in capsys.readouterr().err
    assert not (env / "ov").exists()
