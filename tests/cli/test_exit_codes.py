"""Exit statuses by cause: one table maps each error to a code, and --help prints that table."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.cli import (
    EXIT_INTERRUPTED,
    EXIT_STATUSES,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    build_parser,
    exit_code_for,
    main,
)
from sandbox.errors import (
    BundleError,
    CgroupError,
    CgroupUnavailableError,
    ComponentUnavailableError,
    EngineUnavailableError,
    LaunchError,
    ManifestError,
    PolicyError,
    ProbeError,
    ProviderError,
    SandboxError,
    UnavailableError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SandboxError("x"), EXIT_USAGE),
        (ManifestError("app.id", "missing"), EXIT_USAGE),
        (PolicyError("x"), EXIT_USAGE),
        (BundleError("layer 1", "bad digest"), EXIT_USAGE),
        (ProbeError("x"), EXIT_USAGE),
        (ProviderError("x"), EXIT_USAGE),
        (LaunchError("the engine answered 500"), EXIT_USAGE),
        (UnavailableError("x"), EXIT_UNAVAILABLE),
        (EngineUnavailableError("cannot reach the container engine"), EXIT_UNAVAILABLE),
        (ComponentUnavailableError("no X socket"), EXIT_UNAVAILABLE),
        (CgroupUnavailableError("no cgroup hierarchy is mounted"), EXIT_UNAVAILABLE),
        (CgroupError("cannot create /sys/fs/cgroup/sandbox/x"), EXIT_USAGE),
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_each_cause_has_its_code(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_unavailable_errors_stay_what_their_callers_catch() -> None:
    assert issubclass(EngineUnavailableError, LaunchError)
    assert issubclass(ComponentUnavailableError, ProviderError)
    assert issubclass(CgroupUnavailableError, CgroupError)


def test_sandbox_windows_without_a_display_is_unavailable(tmp_path: Path) -> None:
    from sandbox.attribution.x11_windows import list_windows

    with pytest.raises(UnavailableError, match="cannot connect to X display :987"):
        list_windows(":987")


def test_an_error_outside_the_table_has_no_code() -> None:
    with pytest.raises(ValueError, match="no exit status for OSError"):
        exit_code_for(OSError("x"))


def test_codes_are_distinct_and_in_the_help() -> None:
    codes = [s.code for s in EXIT_STATUSES]
    assert len(set(codes)) == len(codes) == 5
    text = build_parser().format_help()
    assert "exit status:" in text
    for s in EXIT_STATUSES:
        assert f"  {s.code:<4} {s.meaning}\n" in text


def test_an_unreachable_engine_exits_3_not_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    assert main(["manifest", "check", "--docker-host", dead, "example/app:1"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert f"sandbox: error: cannot reach the container engine at {tmp_path}/no-engine.sock" in err


def test_an_unreachable_engine_through_docker_py_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    out = tmp_path / "app.sbx"
    code = main(["export", "--docker-host", dead, "-o", str(out), "example/app:1"])
    assert code == EXIT_UNAVAILABLE
    assert "cannot reach the container engine" in capsys.readouterr().err
    assert not out.exists()


def test_no_endpoint_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["manifest", "check", "--docker-host", "ssh://host", "example/app:1"])
    assert code == EXIT_UNAVAILABLE
    assert "cannot connect to the container engine: --docker-host" in capsys.readouterr().err


def test_bad_input_still_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "sandbox.toml"
    bad.write_text("[app]\n")
    assert main(["manifest", "check", str(bad)]) == EXIT_USAGE
