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
    "cli": GROUND | BELOW_DISTRIBUTION | {"distribution"},
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


def _from_module(node: ast.ImportFrom, path: Path, root: Path) -> str:
    if not node.level:
        return node.module or ""
    parts = _package(path, root).split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _string_import(node: ast.Call) -> str | None:
    """The module an `importlib.import_module(...)` / `__import__(...)` call names, as far as
    its first argument spells it out (an f-string up to its first placeholder)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".") + ".?"
    return "<computed>"  # a module named at run time: the plan cannot be checked


def _imported(path: Path, root: Path) -> list[tuple[int, str, str]]:
    """(line, module, imported name or '') for every import of a sandbox module in `path`,
    whether written as an import statement or as a call of import_module/__import__."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, "") for a in node.names if a.name.startswith("sandbox")]
        elif isinstance(node, ast.ImportFrom):
            module = _from_module(node, path, root)
            if module == "sandbox" or module.startswith("sandbox."):
                found += [(node.lineno, module, a.name) for a in node.names]
        elif isinstance(node, ast.Call):
            module = _string_import(node)
            if module is not None and not module.startswith(("sandbox.", "<")):
                continue  # another library, imported lazily
            if module is not None:
                found.append((node.lineno, module, ""))
    return found


def _private_attributes(path: Path, root: Path, floor: str) -> list[str]:
    """`mod._name` where `mod` was imported from another package: a private name reached by
    attribute instead of by import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    foreign: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _from_module(node, path, root)
            if module.startswith("sandbox") and _target_floor(module, node.names[0].name) != floor:
                foreign |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            foreign |= {a.asname for a in node.names if a.asname and a.name.startswith("sandbox")}
    return [
        f"{path.relative_to(root)}:{node.lineno}: private name {node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in foreign
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]


def _target_floor(module: str, name: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:  # `from sandbox import x`: x is the module
        return "api" if name in ("__init__", "__main__", "") else name
    return parts[1]


def _violations(path: Path, root: Path = ROOT) -> list[str]:
    floor = _floor(path, root)
    bad = _private_attributes(path, root, floor)
    for line, module, name in _imported(path, root):
        if module == "<computed>":
            # only the public API, which may import every floor, looks modules up by name
            if floor != "api":
                bad.append(f"{path.relative_to(root)}:{line}: imports a module named at run time")
            continue
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
        ("runtime/x.py", "import importlib\nimportlib.import_module('sandbox.distribution.x')"),
        ("providers/x.py", "m = __import__('sandbox.probes.x')"),
        ("runtime/x.py", "import importlib\nimportlib.import_module(f'sandbox.cli.{n}')"),
        ("runtime/x.py", "import importlib\nimportlib.import_module(name)"),
        ("runtime/x.py", "from sandbox.probes import docker\ndocker._read_text('/x')"),
        ("runtime/x.py", "import sandbox.probes.docker as d\nd._connect()"),
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
