"""Every caller hands the whole :class:`SamplerOptions` to the generation service (issue 33).

- The authors profile's ``start_at_T`` and ``predictor_input`` reach every generating command of
  the workflow (regeneration and every study), read from a dry run of the workflow.
- A new field added to :class:`SamplerOptions` reaches the service from every caller without
  editing any: a subclass with an extra field ``probe`` is put in place of the dataclass; every
  generating command then has a ``--probe`` flag whose value arrives in the options, and each
  library caller (regenerate, the five studies) hands the options with ``probe`` to
  :func:`dosmatgen.generate.runner.generate` unchanged.
"""

from __future__ import annotations

import dataclasses
import shlex

import pytest
import yaml

import dosmatgen.generate.options as options_module
import dosmatgen.generate.runner as runner
from dosmatgen.generate.options import SamplerOptions
from test_studies import _au3ni, _iro2, _znsn3, models, ni_target  # noqa: F401,F811  (fixtures)
from test_workflow import REPO_ROOT, snakemake, write_config

GENERATING = [["sample"], ["evaluate", "regenerate"], ["studies", "masked"], ["studies", "template"],
              ["studies", "fixed-type"], ["studies", "screen"], ["studies", "window-sweep"]]


def test_the_authors_settings_reach_every_generating_command(tmp_path):
    authors = yaml.safe_load((REPO_ROOT / "config" / "authors.yaml").read_text())["generate"]
    assert authors["start_at_T"] is True and authors["predictor_input"] == "pre_corrector"
    config = write_config(tmp_path, generate={"start_at_T": True, "predictor_input": "pre_corrector"},
                          studies={"run": ["masked", "template", "fixed-type", "screen", "window-sweep"]})
    proc = snakemake("-n", "-p", "all", cwd=tmp_path, configfile=config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = (proc.stdout + proc.stderr).splitlines()
    commands = [ln for ln in lines if "evaluate regenerate" in ln or ("dosmatgen studies " in ln and "--checkpoint" in ln)]
    assert {"regenerate", "masked", "template", "fixed-type", "screen", "window-sweep"} <= {
        "regenerate" if "evaluate regenerate" in ln else shlex.split(ln)[shlex.split(ln).index("studies") + 1]
        for ln in commands}
    for ln in commands:
        assert "--start-at-T" in ln and "--predictor-input pre_corrector" in ln, ln
    default = write_config(tmp_path / "default")  # negative control: the defaults render no flag
    text = snakemake("-n", "-p", "all", cwd=tmp_path / "default", configfile=default).stdout
    assert "--start-at-T" not in text and "--predictor-input" not in text


@dataclasses.dataclass(frozen=True)
class Extended(SamplerOptions):
    """SamplerOptions with one more field, as a future knob would be added."""

    probe: int = dataclasses.field(default=0, metadata={"help": "a knob added after the callers were written",
                                                        "kind": "int"})


class Reached(Exception):
    pass


@pytest.fixture
def extended(monkeypatch):
    """Extended in place of SamplerOptions; the service records what it is given and stops."""
    seen: list = []

    def spy(diffusion, spec, options, **kwargs):
        seen.append(options)
        raise Reached

    monkeypatch.setattr(options_module, "SamplerOptions", Extended)
    monkeypatch.setattr(runner, "generate", spy)
    return seen


@pytest.mark.parametrize("command", GENERATING, ids=" ".join)
def test_a_new_field_gets_a_flag_on_every_generating_command(extended, command):
    from dosmatgen.cli import build_parser
    from dosmatgen.commands.arguments import sampler_options

    required = {"sample": "--checkpoint c --out o", "regenerate": "--checkpoint c --store s --split p --out o"}
    extra = required.get(command[-1], "--checkpoint c --surrogate s --out o")
    args = build_parser().parse_args(command + shlex.split(extra) + ["--probe", "7", "--start-at-T"])
    opts = sampler_options(args)
    assert isinstance(opts, Extended) and opts.probe == 7 and opts.start_at_T is True
    assert sampler_options(build_parser().parse_args(command + shlex.split(extra))).probe == 0


def _study_calls(models, target, tmp_path):
    from dosmatgen.studies.fixed_type import FixedTypeConfig, run_fixed_type
    from dosmatgen.studies.masked import MaskedConfig, run_masked
    from dosmatgen.studies.screening import ScreenConfig, run_screening
    from dosmatgen.studies.template import TemplateConfig, run_template
    from dosmatgen.studies.window import WindowConfig, run_window_sweep

    opts = Extended(steps=2, probe=7)
    records = [_au3ni(), _iro2(), _znsn3()]
    return {
        "masked": lambda: run_masked(models, target, MaskedConfig(n_atoms=(2,), n_candidates=1, sampler=opts), tmp_path / "m"),
        "template": lambda: run_template(models, target, TemplateConfig(t0s=(5,), n_candidates=1, sampler=opts),
                                         tmp_path / "t", store_records=records),
        "fixed-type": lambda: run_fixed_type(models, target, FixedTypeConfig(elements=("Ti",), n_atoms=(2,),
                                                                             n_candidates=1, sampler=opts), tmp_path / "f"),
        "screen": lambda: run_screening(models, target, ScreenConfig(n_atoms=(2,), n_per_size=1, sampler=opts),
                                        tmp_path / "s"),
        "window-sweep": lambda: run_window_sweep(models, target, WindowConfig(n_atoms=(2,), n_candidates=1,
                                                                              sampler=opts), tmp_path / "w"),
    }


@pytest.mark.parametrize("study", ["masked", "template", "fixed-type", "screen", "window-sweep"])
def test_a_new_field_reaches_the_service_from_every_study(extended, models, ni_target, tmp_path, study):  # noqa: F811
    with pytest.raises(Reached):
        _study_calls(models, ni_target, tmp_path)[study]()
    assert len(extended) == 1 and isinstance(extended[0], Extended) and extended[0].probe == 7


def test_a_new_field_reaches_the_service_from_regenerate(extended, models, tmp_path):  # noqa: F811
    from test_regenerate import toy_records

    with pytest.raises(Reached):
        runner.regenerate(models.diffusion, models.diffusion_std, toy_records(2), tmp_path / "g.npz",
                          Extended(steps=2, probe=7))
    assert extended[0].probe == 7


def test_the_studies_sampler_overrides_the_generate_section(tmp_path):
    """studies.sampler replaces generate's values for the studies only (the demo's type
    temperature 0 and geometry temperature 0.5 regenerate the test crystals, the studies keep 1): a dry run shows the flag on
    every regenerate command and on no study; negative control: without the override every study
    carries it too."""
    studies = ["masked", "template", "fixed-type", "screen", "window-sweep"]

    def commands(folder, **study_extra):
        config = write_config(folder, generate={"type_temperature": 0.0, "geometry_temperature": 0.5},
                              studies={"run": studies, **study_extra})
        proc = snakemake("-n", "-p", "all", cwd=folder, configfile=config)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        lines = (proc.stdout + proc.stderr).splitlines()
        regen = [ln for ln in lines if "evaluate regenerate" in ln]
        study = [ln for ln in lines if "dosmatgen studies " in ln and "--checkpoint" in ln]
        assert regen and len(study) == len(studies)
        return regen, study

    regen, study = commands(tmp_path / "override", sampler={"type_temperature": 1.0, "geometry_temperature": 1.0})
    assert all("--type-temperature 0.0" in ln and "--geometry-temperature 0.5" in ln for ln in regen)
    assert not any("--type-temperature" in ln or "--geometry-temperature" in ln for ln in study)
    _, study = commands(tmp_path / "plain")
    assert all("--type-temperature 0.0" in ln and "--geometry-temperature 0.5" in ln for ln in study)
