"""`sandbox install` and `sandbox update` in a terminal: what each step prints, asks and returns,
with the bundle reader, the engine and the install library replaced by fakes."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.cli import main
from sandbox.distribution.install import InstallAction
from sandbox.distribution.publishers import NO_PIN, review_line

APP = SimpleNamespace(id="org.example.App", name="Example", version="2.0", vendor="Studio")
OLD = SimpleNamespace(version="1.0", pin=NO_PIN)
WHO = review_line("Studio", None) + "\n"  # the fakes' files are unsigned


class _Engine:
    def __enter__(self) -> _Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _preview(action: InstallAction, *, previous: Any = None, more: tuple[str, ...] = ()) -> Any:
    header = SimpleNamespace(manifest=SimpleNamespace(app=APP), kind=SimpleNamespace(value="thin"))
    return SimpleNamespace(
        action=action,
        bundle=SimpleNamespace(header=header, publisher=None),
        previous=previous,
        new_permissions=more,
        needs_consent=previous is None or bool(more),
        plan="PLAN",
    )


RESULT = SimpleNamespace(
    app=SimpleNamespace(
        app_id=APP.id, version=APP.version, image_id="sha256:" + "a" * 64, previous=OLD
    ),
    files=SimpleNamespace(desktop="/data/applications/org.example.App.desktop"),
    removed_image="sha256:" + "b" * 64,
    notes=("a note",),
)


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    state = SimpleNamespace(preview=None, committed=[], file=tmp_path / "app.sbx")
    state.file.write_bytes(b"bundle")

    def preview(*_a: object, progress: Any = None, **_k: object) -> Any:
        progress(1, 2)
        return state.preview

    def commit(preview: Any, *_a: object, progress: Any = None, **_k: object) -> Any:
        progress(2, 2)
        state.committed.append(preview)
        return RESULT

    monkeypatch.setattr("sandbox.engine.adapter.DockerAdapter.from_env", lambda _url: _Engine())
    monkeypatch.setattr("sandbox.distribution.installed.default_data_home", lambda: tmp_path)
    monkeypatch.setattr("sandbox.distribution.install.preview_install", preview)
    monkeypatch.setattr("sandbox.distribution.update.preview_update", preview)
    monkeypatch.setattr("sandbox.distribution.update.commit_update", commit)
    monkeypatch.setattr("sandbox.policy.review.review_text", lambda plan: f"review of {plan}\n")
    return state


def _run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    answer: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_install_asks_and_reports(
    fakes: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.preview = _preview(InstallAction.INSTALL)
    code, out, err = _run(capsys, monkeypatch, ["install", str(fakes.file)], "y\n")
    assert code == 0
    assert out == (
        WHO + "review of PLAN\n"
        f"installed {APP.id} 2.0 (image sha256:aaaaaaaaaaaa)\n"
        "menu entry: /data/applications/org.example.App.desktop\n"
        "removed the previous image sha256:bbbbbbbbbbbb\n"
        f"kept 1.0 for `sandbox rollback {APP.id}`\n"
    )
    assert "verifying [" in err and "loading [" in err
    assert "Install Example 2.0? [y/N] " in err
    assert err.endswith("note: a note\n")


def test_install_declined_at_end_of_input_commits_nothing(
    fakes: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.preview = _preview(InstallAction.INSTALL)
    code, out, _ = _run(capsys, monkeypatch, ["install", str(fakes.file)])
    assert code == 1
    assert out == WHO + "review of PLAN\ncancelled; nothing was installed\n"
    assert fakes.committed == []


def test_install_of_the_installed_image_does_nothing(
    fakes: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.preview = _preview(InstallAction.SAME, previous=OLD)
    code, out, _ = _run(capsys, monkeypatch, ["install", "--yes", str(fakes.file)])
    assert (code, out) == (0, f"{APP.id} 2.0 is already installed; nothing to do\n")
    assert fakes.committed == []


def test_install_of_another_version_asking_more(
    fakes: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.preview = _preview(InstallAction.UPDATE, previous=OLD, more=("webcam", "network"))
    code, out, err = _run(capsys, monkeypatch, ["install", "--yes", str(fakes.file)])
    assert code == 0
    assert out.startswith(
        WHO + "review of PLAN\n"
        f"\nUpdate of {APP.id} from 1.0 to 2.0\n"
        "This version asks for more: webcam, network\n"
        f"installed {APP.id} 2.0"
    )
    assert "[y/N]" not in err


def test_install_of_another_version_asking_nothing_new(
    fakes: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.preview = _preview(InstallAction.UPDATE, previous=OLD)
    code, out, _ = _run(capsys, monkeypatch, ["install", str(fakes.file)])
    assert code == 0
    assert out.startswith(
        WHO + f"Updating {APP.id} from 1.0 to 2.0 (it asks for nothing new)\ninstalled {APP.id} 2.0"
    )


def test_update_asking_more_is_declined(
    fakes: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.preview = _preview(InstallAction.UPDATE, previous=OLD, more=("webcam",))
    code, out, err = _run(capsys, monkeypatch, ["update", APP.id, str(fakes.file)], "no\n")
    assert code == 1
    assert out == (
        WHO
        + "review of PLAN\n\nThis version asks for more: webcam\ncancelled; nothing was changed\n"
    )
    assert "Update Example to 2.0? [y/N] " in err
    assert fakes.committed == []


def test_update_reports_the_switch(
    fakes: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.preview = _preview(InstallAction.UPDATE, previous=OLD, more=("webcam",))
    code, out, err = _run(capsys, monkeypatch, ["update", APP.id, str(fakes.file)], "yes\n")
    assert code == 0
    assert out == (
        WHO + "review of PLAN\n\nThis version asks for more: webcam\n"
        f"updated {APP.id} 1.0 -> 2.0 (thin file, image sha256:aaaaaaaaaaaa)\n"
        f"kept 1.0 for `sandbox rollback {APP.id}`\n"
        "removed the older image sha256:bbbbbbbbbbbb\n"
    )
    assert err.endswith("note: a note\n")


def test_update_asking_nothing_new_and_the_same_image(
    fakes: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.preview = _preview(InstallAction.UPDATE, previous=OLD)
    code, out, err = _run(capsys, monkeypatch, ["update", APP.id, str(fakes.file)])
    assert code == 0 and out.startswith(WHO + f"updated {APP.id} 1.0 -> 2.0") and "[y/N]" not in err
    fakes.preview = _preview(InstallAction.SAME, previous=OLD)
    code, out, _ = _run(capsys, monkeypatch, ["update", APP.id, str(fakes.file)])
    assert (code, out) == (0, f"{APP.id} 2.0 is already installed; nothing to do\n")
