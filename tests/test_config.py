"""Run configs: the shipped ones validate; every kind of mistake is refused naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from dosmatgen.config import (DEFAULT_CONFIG, cli_flags, load_run_config, run_provenance, validate_run_config,
                              work_dir)
from dosmatgen.errors import ConfigError

CONFIG_DIR = DEFAULT_CONFIG.parent


@pytest.fixture(scope="module")
def ci_raw() -> dict:
    with open(CONFIG_DIR / "ci.yaml") as f:
        return yaml.safe_load(f)


def _error(raw: dict, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        validate_run_config(raw, source="test.yaml", environ={}, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("name", ["ci", "demo", "paper"])
def test_shipped_configs_validate(name):
    cfg = load_run_config(CONFIG_DIR / f"{name}.yaml", environ={})
    assert cfg["profile"] == name
    assert cfg["outputs"]["work"] == f"work/{name}"
    assert cfg["data"]["source"] == "builtin"  # paper says auto: no MP_API_KEY here -> builtin
    assert set(cfg["generate"]["t0"]) == {200, 500, 1000}
    assert set(cfg["studies"]["run"]) <= set(cfg["studies"])


def test_ci_results_do_not_overwrite_demo_results():
    ci = load_run_config(CONFIG_DIR / "ci.yaml", environ={})
    demo = load_run_config(CONFIG_DIR / "demo.yaml", environ={})
    assert demo["outputs"]["results"] == "results" and demo["outputs"]["figures"] == "figures"
    assert ci["outputs"]["results"] != demo["outputs"]["results"]
    assert not ci["outputs"]["figures"].startswith("figures")


def test_paper_config_has_paper_numbers():
    cfg = load_run_config(CONFIG_DIR / "paper.yaml", environ={})
    assert cfg["model"]["size"] == "paper"
    assert cfg["train"]["diffusion"] == {"epochs": 1000, "batch_size": 256, "lr": 1e-3, "patience": None,
                                         "max_steps": None, "ema_decay": None, "repeat_source": {},
                                         "deterministic": False, "weights": "best"}
    assert cfg["generate"]["limit"] is None and cfg["generate"]["steps"] == 1000
    screen = cfg["studies"]["screen"]
    assert screen["n_per_natoms"] * len(screen["natoms"]) == 10_000 and screen["threshold"] == -1.5


def test_auto_source_uses_mp_only_with_a_key(ci_raw):
    raw = copy.deepcopy(ci_raw)
    raw["data"]["source"] = "auto"
    assert validate_run_config(raw, environ={})["data"]["source"] == "builtin"
    assert validate_run_config(raw, environ={"MP_API_KEY": "x"})["data"]["source"] == "mp"
    raw["data"]["source"] = "mp"
    assert "MP_API_KEY" in _error(raw)


def test_defaults_filled_and_input_untouched(ci_raw):
    raw = copy.deepcopy(ci_raw)
    raw["generate"].pop("omega", None)  # the profiles state only what differs from the defaults
    del raw["data"]["split"]
    cfg = validate_run_config(raw, environ={})
    assert cfg["generate"]["omega"] == 1.0
    assert cfg["data"]["split"] == [0.6, 0.2, 0.2]
    assert cfg["train"]["diffusion"]["lr"] == 1e-3  # default inside a $ref'd definition
    assert "omega" not in raw["generate"]  # a copy was completed, not the input


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["train"]["diffusion"].update(epoch=3), "train.diffusion.epoch: unknown key"),
    (lambda c: c["train"]["diffusion"].update(epochs=0), "train.diffusion.epochs: 0 is less than the minimum of 1"),
    (lambda c: c["train"]["surrogate"].update(epochs="ten"), "train.surrogate.epochs: 'ten' is not of type 'integer'"),
    (lambda c: c["generate"].pop("steps"), "generate.steps: missing required key"),
    (lambda c: c["generate"].update(t0=[200, 2000]), "generate.t0[1]: 2000 is greater than the maximum of 1000"),
    (lambda c: c["generate"].update(guidance=["cfg", "cgf"]), "generate.guidance[1]: 'cgf' is not one of"),
    (lambda c: c.update(device="gpu"), "device: 'gpu' does not match"),
    (lambda c: c["data"].update(source="materials-project"), "data.source: 'materials-project' is not one of"),
    (lambda c: c["data"].update(split=[0.6, 0.3, 0.3]), "data.split: fractions [0.6, 0.3, 0.3] must sum to 1"),
    (lambda c: c["studies"].pop("masked"), "studies.masked: listed in studies.run but has no settings section"),
    (lambda c: c["studies"]["fixed-type"].update(elements=["titanium"]), "studies.fixed-type.elements[0]"),
    (lambda c: c.update(typo_key=1), "typo_key: unknown key"),
])
def test_bad_values_name_the_key(ci_raw, edit, expected):
    raw = copy.deepcopy(ci_raw)
    edit(raw)
    message = _error(raw)
    assert message.startswith("test.yaml: ")
    assert expected in message


def test_several_problems_are_listed_together(ci_raw):
    raw = copy.deepcopy(ci_raw)
    raw["seed"] = -1
    raw["evaluate"]["mlff"] = "gpaw"
    message = _error(raw)
    assert "2 problems" in message and "seed:" in message and "evaluate.mlff:" in message


def test_not_a_mapping_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping"):
        validate_run_config([1, 2], source="x.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(bad)


def test_check_files_reports_missing_store(ci_raw, tmp_path):
    raw = copy.deepcopy(ci_raw)
    raw["data"]["builtin_store"] = str(tmp_path / "nope.npz")
    assert "data.builtin_store" in _error(raw, check_files=True)
    validate_run_config(raw, environ={})  # without check_files the path is not looked at


def test_work_dir_override(ci_raw):
    raw = copy.deepcopy(ci_raw)
    raw["outputs"]["work"] = "/scratch/run1"
    assert work_dir(validate_run_config(raw, environ={})) == "/scratch/run1"


def test_cli_flags_rendering():
    assert cli_flags({"n_atoms": [4, 5], "dft": True, "skip": None, "off": False}) == "--n-atoms 4 5 --dft"
    assert cli_flags({"name": "a b", "window": [[-2, 2], [-1, 1]]}) == "--name 'a b' --window -2:2 -1:1"


def test_provenance_records_config_and_checksums(tmp_path):
    cfg = load_run_config(CONFIG_DIR / "ci.yaml", environ={})
    f = tmp_path / "a.txt"
    f.write_text("abc")
    prov = run_provenance(cfg, {"store": str(f), "missing": [str(tmp_path / "none")]})
    assert prov["profile"] == "ci" and prov["config"]["seed"] == cfg["seed"]
    assert prov["inputs"]["store"]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert prov["inputs"]["missing"][0]["exists"] is False
    assert prov["versions"]["torch"]
