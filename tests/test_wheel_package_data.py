"""The built wheel ships policies/ as sandbox/policies and loads them from the zip itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_and_loads_the_packaged_policies(tmp_path: Path) -> None:
    # Build from a copy: a build in the shared checkout would write build/ under everyone's feet.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "sandbox", src / "sandbox", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "policies", src / "policies", ignore=ignore)
    assert (src / "sandbox" / "policies").is_symlink()
    out = tmp_path / "whl"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("sandbox-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for toml in (REPO / "policies").rglob("*.toml"):
        assert f"sandbox/policies/{toml.relative_to(REPO / 'policies')}" in names
    # Import straight from the zip (zipimport): only importlib.resources can read it there.
    probe = (
        "import sandbox, sandbox.config.catalog as c; "
        f"assert sandbox.__file__.startswith({str(wheel)!r}), sandbox.__file__; "
        "print(len(c.load_catalog().all()))"
    )
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(list((REPO / "policies" / "capabilities").glob("*.toml")))
