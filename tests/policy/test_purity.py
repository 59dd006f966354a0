"""sandbox/policy/ stays pure: an AST scan that allows only listed imports and no I/O calls.

The rule is an ALLOW-list, so a new I/O module cannot slip past a forgotten ban:
- stdlib: exactly ALLOWED_STDLIB (pure modules; `tomllib`/`json` parse strings handed in by
  sandbox/config, they never open files);
- sandbox: only `sandbox.errors` and `sandbox.policy[.*]`, whether written `import sandbox.x`,
  `from sandbox import x`, `from sandbox.x import y` or relatively; a relative import that
  climbs out of sandbox/policy (`from .. import probes`, `from ..runtime import x`) is refused;
- posixpath is string arithmetic except for its filesystem functions (POSIXPATH_IO), which are
  refused however they are reached (`posixpath.exists`, `from posixpath import realpath`);
- no call of FORBIDDEN_CALLS, by bare name or through `builtins.`, and no `builtins` import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sandbox.policy

POLICY_DIR = Path(sandbox.policy.__file__).parent
POLICY_PACKAGE = "sandbox.policy"
ALLOWED_STDLIB = frozenset(
    [
        "__future__",
        "collections.abc",
        "dataclasses",
        "enum",
        "json",
        "math",
        "posixpath",
        "re",
        "tomllib",
        "typing",
        "unicodedata",
    ]
)
# The pure host codecs the core may use (ids and their escaping); they are scanned as policy is.
PURE_HOST = frozenset(["sandbox.host.names", "sandbox.host.documents"])
ALLOWED_SANDBOX = frozenset(["sandbox.errors", *PURE_HOST])
POSIXPATH_IO = frozenset(
    [
        "exists",
        "lexists",
        "isfile",
        "isdir",
        "islink",
        "ismount",
        "isjunction",
        "realpath",
        "abspath",  # reads the process's working directory
        "relpath",  # the same, when no start is given
        "expanduser",
        "expandvars",
        "getsize",
        "getmtime",
        "getatime",
        "getctime",
        "samefile",
        "sameopenfile",
        "samestat",
    ]
)
FORBIDDEN_CALLS = frozenset({"open", "input", "print", "exec", "eval", "__import__", "exit"})
HOST_DIR = POLICY_DIR.parent / "host"
PURE_HOST_FILES = sorted(HOST_DIR / (m.rsplit(".", 1)[1] + ".py") for m in PURE_HOST)
MODULES = sorted(POLICY_DIR.rglob("*.py")) + PURE_HOST_FILES


def _module_of(path: Path) -> str:
    rel = path.relative_to(POLICY_DIR).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([POLICY_PACKAGE, *parts])


def _package_of(path: Path) -> str:
    if path.parent == HOST_DIR:
        return "sandbox.host"
    module = _module_of(path)
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _allowed_module(name: str) -> bool:
    if name in ALLOWED_STDLIB or name in ALLOWED_SANDBOX:
        return True
    return name == POLICY_PACKAGE or name.startswith(POLICY_PACKAGE + ".")


def _absolute(node: ast.ImportFrom, package: str) -> str | None:
    """The module an ImportFrom names, resolved against this file's package; None if it leaves
    the top-level package."""
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    if node.level > len(parts):
        return None
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _import_problems(node: ast.Import) -> list[str]:
    return [f"imports {a.name}" for a in node.names if not _allowed_module(a.name)]


def _import_from_problems(node: ast.ImportFrom, package: str) -> list[str]:
    module = _absolute(node, package)
    if module is None:
        return [f"relative import above the top package (level {node.level})"]
    found: list[str] = []
    for alias in node.names:
        # `from sandbox import x` / `from sandbox.policy import x`: x is the module.
        full = f"{module}.{alias.name}"
        if module == "posixpath" and alias.name in POSIXPATH_IO:
            found.append(f"imports posixpath.{alias.name}")
        elif not (_allowed_module(module) and module not in ("sandbox", "")) and not (
            module in ("sandbox", "sandbox.policy", "sandbox.host") and _allowed_module(full)
        ):
            found.append(f"imports {full} (from {module or '.'})")
    return found


def _call_problems(node: ast.Call) -> list[str]:
    func = node.func
    if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
        return [f"calls {func.id}()"]
    return []


def _attribute_problems(node: ast.Attribute) -> list[str]:
    # Attributes, not only calls: `check = posixpath.exists` is as bad as calling it.
    if not isinstance(node.value, ast.Name):
        return []
    if node.value.id == "posixpath" and node.attr in POSIXPATH_IO:
        return [f"uses posixpath.{node.attr}"]
    if node.value.id == "builtins" and node.attr in FORBIDDEN_CALLS:
        return [f"uses builtins.{node.attr}"]
    return []


def _name_problems(node: ast.Name) -> list[str]:
    if node.id in ("builtins", "__builtins__") and isinstance(node.ctx, ast.Load):
        return [f"uses {node.id}"]
    return []


def _node_problems(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return _import_problems(node)
    if isinstance(node, ast.ImportFrom):
        return _import_from_problems(node, package)
    if isinstance(node, ast.Call):
        return _call_problems(node)
    if isinstance(node, ast.Attribute):
        return _attribute_problems(node)
    if isinstance(node, ast.Name):
        return _name_problems(node)
    return []


def _violations(path: Path, package: str | None = None) -> list[str]:
    package = package or _package_of(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.name}:{getattr(node, 'lineno', 0)}: {what}"
        for node in ast.walk(tree)
        for what in _node_problems(node, package)
    ]


def test_there_are_modules_to_scan() -> None:
    assert {p.name for p in MODULES} >= {"engine.py", "layers.py", "plan.py", "review.py"}


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_policy_module_is_pure(path: Path) -> None:
    assert _violations(path) == []


def test_the_scan_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom subprocess import run\nopen('x')\nprint(1)\n")
    assert len(_violations(bad, POLICY_PACKAGE)) == 4


@pytest.mark.parametrize(
    "source",
    [
        "from sandbox import probes",
        "from sandbox import runtime",
        "import sandbox.probes.docker",
        "from sandbox.providers.grant import Grant",
        "from sandbox.host import xauth",
        "from sandbox.engine import adapter",
        "from ..runtime import docker_adapter",
        "from .. import probes",
        "from ... import os",
        "from .... import anything",
        "import posixpath\nposixpath.exists('/x')",
        "import posixpath\nposixpath.realpath('/x')",
        "import posixpath\nposixpath.expanduser('~')",
        "import posixpath\ncheck = posixpath.isfile",
        "from posixpath import getmtime",
        "import builtins\nbuiltins.open('/etc/passwd')",
        "__builtins__['open']('/x')",
        "import logging",
        "import random",
        "import pwd",
        "import datetime",
        "import secrets",
        "from datetime import datetime\ndatetime.now()",
        "import os",
        "import sys",
        "import importlib",
        "import socket",
        "input()",
        "exec('1')",
        "eval('1')",
        "__import__('os')",
        "exit(1)",
    ],
)
def test_the_scan_catches_each_bypass(tmp_path: Path, source: str) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(source + "\n")
    assert _violations(bad, POLICY_PACKAGE), source


@pytest.mark.parametrize(
    "source",
    [
        "from sandbox.errors import PolicyError",
        "from sandbox.host import names",
        "from sandbox.host.names import app_slice_name",
        "from sandbox.policy.plan import Mount",
        "from . import names",
        "from .plan import Mount",
        "from ..errors import PolicyError",
        "import posixpath\nposixpath.normpath('/a/../b')",
        "from collections.abc import Mapping",
    ],
)
def test_the_scan_lets_pure_imports_through(tmp_path: Path, source: str) -> None:
    ok = tmp_path / "ok.py"
    ok.write_text(source + "\n")
    assert _violations(ok, POLICY_PACKAGE) == []
