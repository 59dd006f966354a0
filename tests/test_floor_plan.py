"""The floor plan holds: imports between packages follow an allow-list and reach no private name.

docs/architecture.md draws the floors; this is the same plan as data. Every import counts, at
module level, inside functions and under TYPE_CHECKING alike: a lazy import that runs back up
is still an arrow back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sandbox

ROOT = Path(sandbox.__file__).parent
GROUND = frozenset({"errors", "fileutil"})
BELOW_DISTRIBUTION = frozenset(
    {"host", "engine", "policy", "attribution", "probes", "providers", "config", "runtime"}
)

# Which package may import which (besides itself). Side-by-side packages (probes, providers,
# config; policy and attribution) never import each other.
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "fileutil": frozenset({"errors"}),
    "host": GROUND,
    "engine": GROUND | {"host"},
    "policy": frozenset({"errors", "host"}),  # host.names only: tests/policy/test_purity.py
    "attribution": GROUND | {"host"},
    "probes": GROUND | {"host", "engine", "policy"},
    "providers": GROUND | {"host", "policy"},
    "config": GROUND | {"host", "policy"},
    "runtime": GROUND
    | {"host", "engine", "policy", "attribution", "probes", "providers", "config"},
    "distribution": GROUND | BELOW_DISTRIBUTION,
    "cli": GROUND | BELOW_DISTRIBUTION | {"distribution", "api"},
    # sandbox/__init__.py (the public API) and __main__.py
    "api": GROUND | BELOW_DISTRIBUTION | {"distribution", "cli"},
}
MODULES = sorted(ROOT.rglob("*.py"))
MAX_LINES = 500


def _floor(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if len(rel.parts) == 1:
        stem = rel.stem
        return "api" if stem in ("__init__", "__main__") else stem
    return rel.parts[0]


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    return ".".join(["sandbox", *(p for p in rel.parts if p != "__init__")])


def _package(path: Path, root: Path) -> str:
    name = _module_name(path, root)
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _imported(path: Path, root: Path) -> list[tuple[int, str, str]]:
    """(line, module, imported name or '') for every import of a sandbox module in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, "") for a in node.names if a.name.startswith("sandbox")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = _package(path, root).split(".")
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "sandbox" or module.startswith("sandbox."):
                found += [(node.lineno, module, a.name) for a in node.names]
    return found


def _target_floor(module: str, name: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:  # `from sandbox import x`: x is the module
        return "api" if name in ("__init__", "__main__", "") else name
    return parts[1]


def _violations(path: Path, root: Path = ROOT) -> list[str]:
    floor = _floor(path, root)
    bad: list[str] = []
    for line, module, name in _imported(path, root):
        target = _target_floor(module, name)
        if target == floor:
            continue
        if target not in ALLOWED[floor]:
            bad.append(f"{path.relative_to(root)}:{line}: {floor} imports {module} ({target})")
        private = [p for p in module.split(".")[1:] if p.startswith("_") and p != "__init__"]
        if private or name.startswith("_"):
            bad.append(f"{path.relative_to(root)}:{line}: private name {module}.{name}")
    return bad


def test_every_module_sits_on_a_known_floor() -> None:
    assert {_floor(p, ROOT) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_imports_only_go_down(path: Path) -> None:
    assert _violations(path) == []


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (ceiling {MAX_LINES})"


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("runtime/x.py", "from sandbox.distribution.installed import lookup"),
        ("providers/x.py", "from sandbox.runtime.instances import runtime_root"),
        ("providers/x.py", "from sandbox.probes import device_classify"),
        ("probes/x.py", "from sandbox.providers import xauth"),
        ("attribution/x.py", "from sandbox.policy import names"),
        ("engine/x.py", "from sandbox.policy.plan import MountKind"),
        ("policy/x.py", "import sandbox.engine.http"),
        ("host/x.py", "from ..policy import facts"),
        ("runtime/x.py", "from sandbox.probes import _io"),
        ("runtime/x.py", "from sandbox.probes.docker import _read_text"),
        ("runtime/x.py", "def f():\n    from sandbox.cli import main\n"),
    ],
)
def test_the_check_catches_each_arrow_back_up(tmp_path: Path, where: str, source: str) -> None:
    fake_root = tmp_path / "sandbox"
    path = fake_root / where
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n")
    assert _violations(path, fake_root), source


def test_the_check_lets_downward_imports_through(tmp_path: Path) -> None:
    fake_root = tmp_path / "sandbox"
    path = fake_root / "runtime" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text(
        "from sandbox.host import names\nfrom sandbox.engine.adapter import DockerAdapter\n"
        "from . import spec\nfrom sandbox.policy.plan import LaunchPlan\n"
    )
    assert _violations(path, fake_root) == []
