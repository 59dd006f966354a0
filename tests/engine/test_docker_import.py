"""Which commands import docker-py: `sandbox run` never does (the raw client); export does."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

# --- which commands import docker-py --------------------------------------------------------

# `'docker' in sys.modules` exactly: our own probe module is `sandbox.probes.docker`.
_AFTER_MAIN = """
import sys
from sandbox.cli import main
code = main(sys.argv[1:])
print(repr(('docker' in sys.modules, code)))
"""


def _main_in_fresh_python(*argv: str) -> tuple[bool, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _AFTER_MAIN, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    imported, code = ast.literal_eval(lines[-1])
    return bool(imported), int(code), done.stderr


def test_sandbox_run_never_imports_docker_py(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    imported, code, err = _main_in_fresh_python("run", "--docker-host", dead, "example/app:1")
    # it got as far as asking the engine (image resolution), through the raw client only
    assert code != 0 and f"{tmp_path}/no-engine.sock" in err, err
    assert not imported


def test_run_path_modules_do_not_import_docker_py() -> None:
    code = (
        "import sys, sandbox.cli, sandbox.cli.run_cmd, sandbox.cli.instances_cmd, "
        "sandbox.runtime.session, sandbox.runtime.gc, sandbox.engine.adapter, "
        "sandbox.engine.images, sandbox.engine.error_map, sandbox.runtime.container_body, "
        "sandbox.probes.docker, sandbox.distribution.resolve, sandbox.runtime.supervisor, "
        "sandbox.runtime.prepare, sandbox.runtime.app_cgroup\n"
        "sandbox.cli.build_parser(['run', 'x'])\n"
        "print('docker' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False", done.stderr


def test_sandbox_export_goes_through_docker_py(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    out = tmp_path / "app.sbx"
    imported, code, err = _main_in_fresh_python(
        "export", "--docker-host", dead, "-o", str(out), "example/app:1"
    )
    assert code != 0 and "cannot reach the container engine" in err, err
    assert f"{tmp_path}/no-engine.sock" in err
    assert imported
    assert not out.exists()
