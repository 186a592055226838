"""Layers that only point down (issue 33): every import inside ``dosmatgen/`` (at module level or
inside a function) goes to a module of the same layer or a lower one, and no two modules import
each other, directly or through others. ``ARCHITECTURE.md`` explains the layers; this table is the
rule.

Negative controls: an added upward import and an added circle are both found.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dosmatgen"

#: Bottom to top. A module belongs to the layer of its longest matching prefix; the package face
#: ``dosmatgen`` (``__init__``: the version, and the API's names imported on first use) is core.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("dosmatgen", "dosmatgen.errors", "dosmatgen.paths", "dosmatgen.io", "dosmatgen.threads",
     "dosmatgen.device", "dosmatgen.config_dataclass", "dosmatgen.dos.grid", "dosmatgen.data.schema"),  # core
    ("dosmatgen.dos", "dosmatgen.evaluate.mlff"),                                   # DOS engines, force fields
    ("dosmatgen.data",),                                                            # records, stores, splits
    ("dosmatgen.model", "dosmatgen.checkpoint"),                                    # every trainable network
    ("dosmatgen.generate", "dosmatgen.training"),                                   # generation service, trainer
    ("dosmatgen.evaluate",),                                                        # metrics, tables, claims
    ("dosmatgen.studies",),                                                         # paper §3.2-3.3
    ("dosmatgen.plots", "dosmatgen.config", "dosmatgen.plan", "dosmatgen.bench",
     "dosmatgen.bench_eval"),                                                       # figures, run config, ops
    ("dosmatgen.api", "dosmatgen.commands", "dosmatgen.cli"),                       # the Python API; argument parsing
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> list[tuple[str, str, int]]:
    """``(importer, imported, line)`` for every import of a ``dosmatgen`` module under ``root``."""
    edges = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges += [(importer, a.name, node.lineno) for a in node.names if a.name.split(".")[0] == root.name]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] == root.name:
                    edges.append((importer, node.module, node.lineno))
    return edges


def layer_of(module: str, layers=LAYERS) -> int | None:
    best = None
    for i, prefixes in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def upward_imports(edges, layers=LAYERS) -> list[str]:
    return [f"{a}:{line} imports {b} (layer {layer_of(a, layers)} -> {layer_of(b, layers)})"
            for a, b, line in edges if layer_of(b, layers) > layer_of(a, layers)]


def circles(edges) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_importing_the_package_loads_nothing_heavy():
    """The package face imports no module of its own at import time (the API is loaded when one of
    its names is first used), and no torch."""
    import subprocess
    import sys

    code = ("import sys, dosmatgen; mods = [m for m in sys.modules if m.startswith(('dosmatgen.', 'torch'))]; "
            "print(mods)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_every_module_has_a_layer():
    modules = {module_name(p, PACKAGE) for p in PACKAGE.rglob("*.py")}
    assert sorted(m for m in modules if layer_of(m) is None) == []


def test_imports_only_point_down():
    assert upward_imports(import_graph(PACKAGE)) == []


def test_no_circle():
    assert circles(import_graph(PACKAGE)) == []


def _copy_package(tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "dosmatgen"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_an_added_upward_import_is_found(tmp_path):
    """Negative control: the data layer importing the generation service fails the rule."""
    root = _copy_package(tmp_path)
    store = root / "data" / "store.py"
    store.write_text(store.read_text() + "\n\ndef _probe():\n    from dosmatgen.generate.runner import generate\n")
    found = upward_imports(import_graph(root))
    assert len(found) == 1 and found[0].startswith("dosmatgen.data.store:") and "dosmatgen.generate.runner" in found[0]


def test_an_added_circle_is_found(tmp_path):
    """Negative control: two modules of one layer importing each other make a circle."""
    root = _copy_package(tmp_path)
    errors = root / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom dosmatgen.io import atomic_write  # noqa\n")
    assert ["dosmatgen.errors", "dosmatgen.io"] in circles(import_graph(root))


@pytest.mark.parametrize("module", ["dosmatgen.data.store", "dosmatgen.generate.runner", "dosmatgen.cli"])
def test_layer_table_places_known_modules(module):
    assert layer_of(module) is not None
