"""sandbox/policy/ stays pure: an AST scan for I/O imports and I/O builtins in every module.

The rule: no module under sandbox/policy imports (at any depth, `import x` or `from x import`)
one of FORBIDDEN_MODULES, nor calls one of FORBIDDEN_CALLS. `tomllib.loads`/`json` stay allowed:
they parse strings handed in by sandbox/config.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sandbox.policy

POLICY_DIR = Path(sandbox.policy.__file__).parent
FORBIDDEN_MODULES = frozenset(
    [
        "os",
        "io",
        "socket",
        "subprocess",
        "pathlib",
        "shutil",
        "tempfile",
        "glob",
        "docker",
        "Xlib",
        "pulsectl",
        "pyudev",
        "cgroupspy",
        "requests",
        "urllib",
        "http",
        "ctypes",
        "threading",
        "asyncio",
        "signal",
        "time",
        "select",
        "fcntl",
        "multiprocessing",
        "importlib",
        "sys",
    ]
)
FORBIDDEN_CALLS = frozenset({"open", "input", "print", "exec", "eval", "__import__", "exit"})
MODULES = sorted(POLICY_DIR.rglob("*.py"))


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{path.name}:{node.lineno}: imports {name}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(f"{path.name}:{node.lineno}: calls {node.func.id}()")
    return found


def test_there_are_modules_to_scan() -> None:
    assert {p.name for p in MODULES} >= {"engine.py", "layers.py", "plan.py", "review.py"}


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_policy_module_is_pure(path: Path) -> None:
    assert _violations(path) == []


def test_the_scan_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom subprocess import run\nopen('x')\nprint(1)\n")
    assert len(_violations(bad)) == 4
