"""Shared test helpers."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
if str(REPO) not in sys.path:  # dev_scripts (e.g. the built-in dataset builder, dev_scripts.builtin) imports from here
    sys.path.append(str(REPO))


@pytest.fixture
def script():
    """Import ``scripts/<name>.py`` as a module (the scripts are not a package); a name with a
    ``/`` is a path from the repository root without ``.py``, e.g.
    ``experiments/validity_probe/validity_probe``."""
    def load(name: str):
        path = REPO / f"{name}.py" if "/" in name else SCRIPTS / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{Path(name).name}_script", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod
    return load
