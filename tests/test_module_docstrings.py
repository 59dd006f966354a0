"""Every module of sandbox/ opens with a one-line summary docstring (its role and its limits)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sandbox

PACKAGE = Path(sandbox.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "policies" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_module_opens_with_a_one_line_summary(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
    assert doc, f"{path}: no module docstring"
    summary = doc.split("\n\n", 1)[0]
    assert "\n" not in summary.strip(), f"{path}: the summary spans lines: {summary!r}"
