"""The docstring examples of every module that has them run and pass."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dosmatgen"
#: and the built-in dataset builder outside the package (dev_scripts/builtin, importable through conftest.py)
BUILDER = PACKAGE.parent / "dev_scripts" / "builtin"
MODULES = sorted(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
                 for root in (PACKAGE, BUILDER) for p in root.rglob("*.py") if ">>>" in p.read_text())


def test_some_modules_have_examples():
    assert "dosmatgen.dos.gpaw_engine" in MODULES and len(MODULES) >= 10


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
