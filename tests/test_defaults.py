"""One table of defaults (issue 33): every sampler default is written once, in
:class:`dosmatgen.generate.options.SamplerOptions`; the run-config schema's ``generate`` defaults
equal it; every generating command's flags come from its fields and default to "not given"; the
relaxation defaults are written once, in :mod:`dosmatgen.evaluate.mlff`.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from dosmatgen.cli import build_parser
from dosmatgen.generate.options import SamplerOptions

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
FIELDS = {f.name: f for f in dataclasses.fields(SamplerOptions)}
#: SamplerOptions fields the run config does not set in ``generate`` (seed: the top-level ``seed``;
#: guidance: one regenerate job per mode in ``generate.guidance``; allowed_types: the studies' store).
NOT_IN_SCHEMA = {"seed", "guidance", "allowed_types"}


def test_schema_generate_defaults_equal_the_sampler_options():
    props = SCHEMA["properties"]["generate"]["properties"]
    for name, f in FIELDS.items():
        if name in NOT_IN_SCHEMA:
            assert name not in props or "default" not in props[name], name
            continue
        assert name in props, f"generate.{name} missing from the schema"
        if name == "steps":  # required in every profile: the schema has no default
            assert "default" not in props[name]
            continue
        assert props[name]["default"] == f.default, name


@pytest.mark.parametrize("command", [["sample"], ["evaluate", "regenerate"], ["studies", "masked"],
                                     ["studies", "template"], ["studies", "fixed-type"], ["studies", "screen"],
                                     ["studies", "window-sweep"]])
def test_every_generating_command_has_every_sampler_flag_not_given_by_default(command):
    parser = build_parser()
    sub = parser
    for name in command:
        sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    dests = {a.dest: a for a in sub._actions}
    for name in FIELDS:
        assert name in dests, f"{' '.join(command)} has no flag for SamplerOptions.{name}"
        assert dests[name].default is None, f"{' '.join(command)} --{name}: a default written twice"


#: Names whose default is written once: the sampler's in SamplerOptions (as ``_opt(...)`` fields),
#: the relaxation's as DEFAULT_FMAX / DEFAULT_RELAX_STEPS in dosmatgen/evaluate/mlff.py.
ONCE = {"step_lr", "omega", "omega_geometry", "guidance_scale", "repel_until", "repel_distance", "start_at_T",
        "predictor_input", "fmax", "relax_steps"}


def literal_defaults(root: Path) -> list[str]:
    """Places under ``root`` that write a literal default for a name of :data:`ONCE`: a function
    parameter, a class field or an argparse ``default=`` of such a flag (a call that passes a value on
    purpose, e.g. ``fmax=1e-9`` to time a relaxation that never converges, is not a default)."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            found = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                pos = args.posonlyargs + args.args
                found += [(a.arg, d) for a, d in zip(pos[len(pos) - len(args.defaults):], args.defaults)]
                found += [(a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            elif isinstance(node, ast.ClassDef):
                found += [(st.target.id, st.value) for st in node.body if isinstance(st, ast.AnnAssign)
                          and isinstance(st.target, ast.Name) and st.value is not None]
            elif isinstance(node, ast.Call):
                flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                names = {f.lstrip("-").replace("-", "_") for f in flags if f.startswith("--")}
                found += [(n, kw.value) for kw in node.keywords if kw.arg == "default" for n in names]
            hits += [f"{path.relative_to(root.parent)}:{v.lineno} {name}" for name, v in found
                     if name in ONCE and isinstance(v, ast.Constant) and v.value is not None]
    return hits


def test_one_definition_of_each_default():
    assert literal_defaults(REPO / "dosmatgen") == []
    assert literal_defaults(REPO / "dev_scripts") == []  # the built-in dataset builder, moved out of the package


def test_the_default_scan_sees_a_retyped_default(tmp_path):
    """Negative control: a parameter, a field and a flag that retype a default are all found."""
    pkg = tmp_path / "dosmatgen"
    pkg.mkdir()
    (pkg / "x.py").write_text("def f(step_lr: float = 1e-5):\n    pass\n\n\nclass C:\n    fmax: float = 0.05\n\n\n"
                              "p.add_argument('--repel-until', type=int, default=200)\n")
    assert literal_defaults(pkg) == ["dosmatgen/x.py:1 step_lr", "dosmatgen/x.py:6 fmax", "dosmatgen/x.py:9 repel_until"]


def test_mlff_names_of_the_schema_are_the_registry():
    from dosmatgen.evaluate.mlff import CALCULATORS

    enum = SCHEMA["properties"]["evaluate"]["properties"]["mlff"]["enum"]
    assert set(enum) - {"emt"} == set(CALCULATORS)  # emt: the toy calculator of the tests
