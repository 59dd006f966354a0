"""Golden review texts for a few manifests and hosts; SANDBOX_REGEN_GOLDEN=1 rewrites them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from engine_support import APP_ID, bare_host, desktop, make_plan, manifest, x11_host

from sandbox.policy.layers import SitePolicy, UserOverride
from sandbox.policy.plan import LaunchPlan
from sandbox.policy.review import plan_json, review_json, review_text
from sandbox.policy.vocabulary import AudioMode, Capability, DisplayRequest, Risk

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("SANDBOX_REGEN_GOLDEN") == "1"

GAME = manifest(
    DisplayRequest.WAYLAND_OR_X11,
    (AudioMode.PLAYBACK,),
    gpu=True,
    gamepad=True,
    storage=(("saves", "/home/app/.local/share/game"),),
)
CALL = manifest(
    DisplayRequest.WAYLAND, (AudioMode.PLAYBACK, AudioMode.RECORD), webcam=True, network=True
)
LEGACY = manifest(DisplayRequest.X11_TRUSTED)

CASES: dict[str, Callable[[], LaunchPlan]] = {
    "game-desktop": lambda: make_plan(GAME, desktop()),
    "game-headless": lambda: make_plan(GAME, bare_host()),
    "game-x11-no-security": lambda: make_plan(GAME, x11_host(security=False)),
    "videocall-desktop": lambda: make_plan(CALL, desktop()),
    "videocall-site-medium-user-revoke": lambda: make_plan(
        CALL,
        desktop(),
        SitePolicy(max_risk=Risk.MEDIUM),
        UserOverride(
            APP_ID, revoke=frozenset({Capability.NETWORK}), grant=frozenset({Capability.GAMEPAD})
        ),
    ),
    "legacy-x11-trusted": lambda: make_plan(LEGACY, x11_host()),
}


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}; run with SANDBOX_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CASES))
def test_review_text_golden(name: str) -> None:
    _check(f"{name}.txt", review_text(CASES[name]()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_review_json_agrees_with_the_plan(name: str) -> None:
    plan = CASES[name]()
    doc = review_json(plan)
    listed = [p["permission"] for group in doc["risks"] for p in group["permissions"]]
    assert sorted(listed) == sorted(str(s.permission) for s in plan.statuses)
    for group in doc["risks"]:
        for p in group["permissions"]:
            assert p["text"] in review_text(plan)
    # the plan JSON is plain JSON all the way down
    assert json.loads(json.dumps(plan_json(plan)))["labels"]["app_id"] == APP_ID


def test_review_examples_from_the_brief() -> None:
    call = review_text(make_plan(CALL, desktop()))
    assert "Camera — Test Webcam at /dev/video0" in call
    assert "Wayland display — Wayland (wayland-1)" in call
    assert "Graphics card — not requested" in call
    headless = review_text(make_plan(GAME, bare_host()))
    assert "Graphics card — unavailable: no GPU found on this host" in headless
    x11 = review_text(make_plan(GAME, x11_host()))
    assert "X11 (:0), untrusted: cannot read other windows" in x11
