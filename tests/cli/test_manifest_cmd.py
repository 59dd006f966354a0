"""`sandbox manifest check|labels`: exit codes, messages naming the field, label output."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from sandbox.cli import EXIT_USAGE, main, manifest_cmd
from sandbox.errors import LaunchError
from sandbox.policy.manifest import (
    OCI_TITLE,
    dump_manifest,
    manifest_from_labels,
    manifest_to_labels,
    parse_manifest,
)


def _load_cases() -> ModuleType:
    # The shared bad-manifest table lives beside the parser's tests (tests/ is not a package).
    path = Path(__file__).resolve().parents[1] / "policy" / "manifest_cases.py"
    spec = importlib.util.spec_from_file_location("manifest_cases", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get("manifest_cases") or importlib.util.module_from_spec(spec)
    if "manifest_cases" not in sys.modules:
        sys.modules["manifest_cases"] = module
        spec.loader.exec_module(module)
    return module


cases = _load_cases()


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "sandbox.toml"
    path.write_text(cases.to_toml(doc), encoding="utf-8")
    return path


def test_check_valid_file_prints_ok_with_id_and_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, cases.valid_doc())
    assert main(["manifest", "check", str(path)]) == 0
    assert capsys.readouterr().out == "ok: com.example.Game 1.2.0\n"


def test_check_json_prints_the_dumped_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, cases.valid_doc())
    assert main(["manifest", "check", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == dump_manifest(parse_manifest(cases.valid_doc()))


@pytest.mark.parametrize("case", cases.BAD, ids=[c.kind for c in cases.BAD])
def test_check_bad_file_exits_2_naming_the_field(
    case: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, cases.bad_doc(case))
    assert main(["manifest", "check", str(path)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"sandbox: error: {case.field}: " in captured.err
    assert case.problem in captured.err


def test_check_toml_syntax_error_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sandbox.toml"
    path.write_text("manifest-version = 1\n[app\n", encoding="utf-8")
    assert main(["manifest", "check", str(path)]) == EXIT_USAGE
    assert "line 2, column 5: TOML syntax error" in capsys.readouterr().err


def test_check_missing_toml_file_is_not_taken_for_an_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["manifest", "check", str(missing)]) == EXIT_USAGE
    assert f"{missing}: no such file" in capsys.readouterr().err


class _FakeAdapter:
    """Stands in for the engine: the labels of one image, or LaunchError like the adapter."""

    labels: ClassVar[dict[str, dict[str, str]]] = {}

    @classmethod
    def from_env(cls, base_url: str | None = None) -> _FakeAdapter:
        return cls()

    def image_labels(self, ref: str) -> dict[str, str]:
        if ref not in self.labels:
            raise LaunchError(f"image {ref} not found")
        return self.labels[ref]

    def __enter__(self) -> _FakeAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def images(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    monkeypatch.setattr(manifest_cmd, "DockerAdapter", _FakeAdapter)
    _FakeAdapter.labels = {}
    return _FakeAdapter.labels


def test_check_image_reads_the_labels(
    images: dict[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    images["game:1"] = manifest_to_labels(parse_manifest(cases.valid_doc()))
    assert main(["manifest", "check", "game:1"]) == 0
    assert capsys.readouterr().out == "ok: com.example.Game 1.2.0\n"


def test_check_image_with_a_tampered_label_names_image_and_label(
    images: dict[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    images["game:1"] = {
        **manifest_to_labels(parse_manifest(cases.valid_doc())),
        OCI_TITLE: "Not The Game",
    }
    assert main(["manifest", "check", "game:1"]) == EXIT_USAGE
    assert f"sandbox: error: image game:1: {OCI_TITLE}: label says" in capsys.readouterr().err


def test_check_image_without_manifest_and_missing_image(
    images: dict[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    images["debian:12"] = {"maintainer": "someone"}
    assert main(["manifest", "check", "debian:12"]) == EXIT_USAGE
    assert "image debian:12: image has no sandbox manifest" in capsys.readouterr().err
    assert main(["manifest", "check", "ghost:1"]) == EXIT_USAGE
    assert "sandbox: error: image ghost:1 not found" in capsys.readouterr().err


def test_labels_prints_key_value_lines_that_parse_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, cases.valid_doc())
    assert main(["manifest", "labels", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = dict(line.split("=", 1) for line in lines)
    assert len(labels) == len(lines)
    assert manifest_from_labels(labels) == parse_manifest(cases.valid_doc())


def test_labels_dockerfile_is_one_quoted_label_instruction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = cases.valid_doc()
    doc["app"]["name"] = 'Quote " Dollar $HOME Back \\ slash'
    path = _write(tmp_path, doc)
    assert main(["manifest", "labels", "--dockerfile", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("LABEL ")
    # Dockerfile double quotes take \\, \" and \$ as escapes (buildkit's shell lexer).
    body = out.removeprefix("LABEL ").replace(" \\\n", " ").strip()
    pairs = re.findall(r'([^\s=]+)="((?:[^"\\]|\\.)*)"', body)
    assert " ".join(f'{k}="{v}"' for k, v in pairs) == re.sub(r" +", " ", body)
    labels = {k: re.sub(r'\\(["$\\])', r"\1", v) for k, v in pairs}
    assert manifest_from_labels(labels) == parse_manifest(doc)
    assert labels[OCI_TITLE] == doc["app"]["name"]


def test_labels_of_a_bad_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = cases.valid_doc()
    doc["capabilities"]["teleport"] = True
    assert main(["manifest", "labels", str(_write(tmp_path, doc))]) == EXIT_USAGE
    assert "capabilities.teleport: unknown key" in capsys.readouterr().err
