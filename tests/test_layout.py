"""The repository's layout (issue 33, item 5): outputs apart from code.

- ``results/`` holds outputs only: no code file under it;
- every experiment under ``experiments/`` has a README with its question, command, commit and
  result files;
- code outside the package (``experiments/``, ``scripts/``, ``dev_scripts/``) imports names of
  ``dosmatgen`` that exist and are public, apart from the few listed below, each waiting for a
  public name in the package.

Each check is a function tried on a made-up tree or file as a negative control.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_SUFFIXES = (".py", ".sh")

# (file, module, name): private names that code outside the package still uses; remove an entry
# when the package offers a public name for it.
KNOWN_PRIVATE = {
    ("experiments/relax_cost/relax_cost_breakdown.py", "dosmatgen.evaluate.formation", "_prepare_item"),
    ("experiments/scale_test/scale_test.py", "dosmatgen.bench", "_MP20_COUNTS"),
    ("experiments/scale_test/scale_test.py", "dosmatgen.bench", "_MP20_WEIGHTS"),
    # the noise-scale probe replaces the sampler's noise draw to scale it; there is no public hook
    ("experiments/repulsion_probe/noise_probe.py", "dosmatgen.generate.sampler", "_Chain"),
    # the channel probe clamps the lattice or the coordinates at every step; there is no public hook
    ("experiments/real_crystal_training/channel_probe.py", "dosmatgen.generate.sampler", "_Chain"),
    # the environment guidance probe adds a move after every step; there is no public hook
    ("experiments/real_crystal_training/environment_guidance.py", "dosmatgen.generate.sampler", "_Chain"),
    # the DDIM probe replaces the predictor's geometry step; there is no public hook
    ("experiments/real_crystal_training/ddim_geometry.py", "dosmatgen.generate.sampler", "_Chain"),
}


def code_files(folder: Path) -> list[Path]:
    """Every code file (``.py``, ``.sh``) under ``folder``."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in CODE_SUFFIXES)


def test_no_code_under_results():
    assert code_files(ROOT / "results") == []


def test_code_under_results_is_found(tmp_path):
    """Negative control: a probe script left in a results folder is found."""
    (tmp_path / "probe" / "deep").mkdir(parents=True)
    (tmp_path / "probe" / "table.md").write_text("| a |\n")
    (tmp_path / "probe" / "deep" / "run.sh").write_text("echo\n")
    (tmp_path / "probe" / "probe.py").write_text("print(1)\n")
    assert [p.name for p in code_files(tmp_path)] == ["run.sh", "probe.py"]


def readme_gaps(folder: Path) -> list[str]:
    """What an experiment folder's README lacks: the question, a command, the commit, the results."""
    readme = folder / "README.md"
    if not readme.is_file():
        return ["README.md"]
    text = readme.read_text(encoding="utf-8").lower()
    wanted = {"question": "question", "command": "command", "commit": "recorded at", "result files": "result"}
    return [what for what, word in wanted.items() if word not in text]


def test_every_experiment_has_a_readme():
    folders = [p for p in sorted((ROOT / "experiments").iterdir()) if p.is_dir() and p.name != "__pycache__"]
    assert len(folders) >= 10
    assert {p.name: readme_gaps(p) for p in folders if readme_gaps(p)} == {}
    for folder in folders:  # and holds the code, not the results
        assert code_files(folder), folder


def test_an_experiment_without_its_readme_is_found(tmp_path):
    """Negative control: no README, and a README without a commit, are both named."""
    assert readme_gaps(tmp_path) == ["README.md"]
    (tmp_path / "README.md").write_text("Question: why? Command: `bash run.sh`. Result files: x.json\n")
    assert readme_gaps(tmp_path) == ["commit"]


def _resolves(module: str, name: str) -> bool:
    mod = importlib.import_module(module)
    if hasattr(mod, name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
        return True
    except ImportError:
        return False


def import_problems(path: Path, rel: str) -> list[str]:
    """``dosmatgen`` imports of one Python file that do not resolve, or that use a private name
    (``_x``, imported or read as an attribute of an imported module) not in :data:`KNOWN_PRIVATE`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems: list[str] = []
    aliases: dict[str, str] = {}  # local name -> dosmatgen module

    def check(module: str, name: str | None, line: int) -> None:
        try:
            ok = importlib.import_module(module) is not None if name is None else _resolves(module, name)
        except ImportError as exc:
            problems.append(f"{rel}:{line}: {module}: {exc}")
            return
        if not ok:
            problems.append(f"{rel}:{line}: {module} has no {name}")
        private = [part for part in module.split(".") + ([name] if name else []) if part.startswith("_")]
        if private and (rel, module, name) not in KNOWN_PRIVATE:
            problems.append(f"{rel}:{line}: private name {module}{'.' + name if name else ''}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "dosmatgen":
            for alias in node.names:
                check(node.module, alias.name, node.lineno)
                if alias.name != "*":
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dosmatgen":
                    check(alias.name, None, node.lineno)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            module = aliases[node.value.id]
            if (rel, module, node.attr) not in KNOWN_PRIVATE:
                problems.append(f"{rel}:{node.lineno}: private name {module}.{node.attr}")
    return problems


def test_code_outside_the_package_imports_public_names_that_exist():
    problems = []
    for folder in ("experiments", "scripts", "dev_scripts"):
        for path in code_files(ROOT / folder):
            if path.suffix == ".py":
                problems += import_problems(path, path.relative_to(ROOT).as_posix())
    assert problems == []


def test_known_private_uses_are_still_there():
    """The allow-list shrinks: an entry whose use is gone must be removed."""
    for rel, module, name in KNOWN_PRIVATE:
        assert name in (ROOT / rel).read_text(encoding="utf-8"), (rel, name)


def test_private_and_missing_imports_are_found(tmp_path):
    """Negative control: a private import, a private attribute of an imported module, a missing
    name and a missing module are each reported; public imports are not."""
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import dosmatgen.io as IO\n"
        "from dosmatgen.io import atomic_write\n"           # public: fine
        "from dosmatgen.errors import ConfigError, _nope\n"  # missing and private
        "from dosmatgen.no_such_module import x\n"          # missing module
        "IO._hidden\n")                                     # private attribute
    found = import_problems(bad, "probe.py")
    assert any("dosmatgen.errors has no _nope" in p for p in found)
    assert any("private name dosmatgen.errors._nope" in p for p in found)
    assert any("dosmatgen.no_such_module" in p for p in found)
    assert any("private name dosmatgen.io._hidden" in p for p in found)
    assert not any("atomic_write" in p or "ConfigError" in p for p in found)


# import name -> distribution declared in pyproject.toml (gpaw: Debian's, run by its own interpreter)
IMPORT_TO_DIST = {"PIL": "pillow", "yaml": "pyyaml", "orb_models": "orb-models", "mp_api": "mp-api",
                  "torch_sim": "torch-sim-atomistic", "torch_geometric": "torch_geometric"}


def third_party_imports(root: Path) -> set[str]:
    import ast
    import sys

    names = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("dosmatgen", "__future__", "gpaw")}


def declared_distributions() -> set[str]:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    return {re.split(r"[<>=!\[ ;]", d, maxsplit=1)[0].lower() for d in specs}


def test_every_imported_package_is_declared():
    declared = declared_distributions()
    missing = sorted(n for n in third_party_imports(ROOT / "dosmatgen") if IMPORT_TO_DIST.get(n, n).lower() not in declared)
    assert missing == []


def test_every_package_the_dev_scripts_import_is_declared():
    """The built-in dataset builder moved out of the package (dev_scripts/builtin) keeps its imports declared."""
    declared = declared_distributions()
    names = third_party_imports(ROOT / "dev_scripts") - {"dev_scripts"}
    assert sorted(n for n in names if IMPORT_TO_DIST.get(n, n).lower() not in declared) == []


def test_an_undeclared_import_is_found(tmp_path):
    """Negative control."""
    (tmp_path / "x.py").write_text("import numpy\nimport jsonschema_missing_pkg\n")
    assert third_party_imports(tmp_path) == {"numpy", "jsonschema_missing_pkg"}
    assert "jsonschema_missing_pkg" not in declared_distributions()
