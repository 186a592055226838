"""The cost model: units of work from a run config, the estimate, rates files, the CLI's bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dosmatgen.config import load_run_config
from dosmatgen.errors import ConfigError
from dosmatgen.plan import DataSize, Rates, TRUTH_STEP_FRACTION, estimate, per_target, workload

ROOT = Path(__file__).resolve().parents[1]


def units(jobs, rule, label=None):
    return [j.units for j in jobs if j.rule == rule and (label is None or j.label == label)]


def test_demo_units_follow_the_config():
    cfg = load_run_config("config/demo.yaml", environ={})
    data = DataSize(1528, 3.0)
    jobs = workload(cfg, data)
    # diffusion: 5000 epochs x ceil(917 / 64) steps, capped by max_steps 10,000
    (diff,) = units(jobs, "train", "diffusion")
    assert diff["train_step:diffusion"] == 10_000
    assert diff["val_crystal:diffusion"] == pytest.approx(10_000 / math.ceil(917 / 64) * 305)
    # 3 modes (cfg, classifier, uncond baseline) x 3 start steps; T = 200 uses 40 of the 200 strided steps
    regen = units(jobs, "regenerate")
    assert len(regen) == 9
    # every test structure (limit null): the 306 of 1,528 in sampler chunks of 128
    assert units(jobs, "regenerate", "cfg T=200")[0]["sample_chunk_step:cfg"] == math.ceil(306 / 128) * 40
    assert units(jobs, "regenerate", "uncond T=1000")[0]["sample_chunk_step:uncond"] == math.ceil(306 / 128) * 200
    limited = workload({**cfg, "generate": {**cfg["generate"], "limit": 100}}, data)
    assert units(limited, "regenerate", "cfg T=200")[0]["sample_chunk_step:cfg"] == 40
    # formation: 12 generated crystals x 3 atoms x 60 steps per guided set, shared by the 2 ASE
    # worker processes (threads: 2); the truth at a fraction of the steps
    assert units(jobs, "formation", "cfg T=500")[0]["relax_atom_step:ase"] == 12 * 3.0 * 60 / 2
    assert units(jobs, "formation", "cfg T=500")[0]["relax_crystal_step:ase"] == 12 * 60 / 2
    assert units(jobs, "formation", "ground truth")[0]["relax_atom_step:ase"] == 12 * 3.0 * 60 * TRUTH_STEP_FRACTION / 2
    assert units(jobs, "formation", "cfg T=500")[0]["job"] == 1  # start-up is not shared
    one = workload({**cfg, "threads": 1}, data)
    assert units(one, "formation", "cfg T=500")[0]["relax_atom_step:ase"] == 12 * 3.0 * 60
    assert units(one, "study_screen")[0]["relax_crystal:ase"] == 2 * units(jobs, "study_screen")[0]["relax_crystal:ase"]
    # fixed-type: 50 crystals per element (4 elements, atom counts cycling), one 100-crystal chunk each
    assert units(jobs, "study_fixed-type")[0]["sample_chunk_step:cfg"] == 4 * 200
    assert units(jobs, "study_fixed-type")[0]["surrogate_crystal"] == 4 * 50
    # the 2 worker processes are started once per relaxing job; one process needs no pool
    assert units(jobs, "formation", "cfg T=500")[0]["relax_pool:ase"] == 1
    assert units(jobs, "study_screen")[0]["relax_pool:ase"] == 1
    assert "relax_pool:ase" not in units(one, "formation", "cfg T=500")[0]
    assert len(units(jobs, "formation")) == 7  # uncond gets no formation energies


def test_paper_relaxer_and_sizes_scale_the_units():
    cfg = load_run_config("config/paper.yaml", environ={})
    cfg["evaluate"]["relaxer"] = "batched"
    data = DataSize(50_790, 10.0)
    jobs = workload(cfg, data)
    f = units(jobs, "formation", "cfg T=1000")[0]
    assert f["relax_crystal:batched"] == data.n_test and "relax_atom_step:ase" not in f
    assert f["relax_atom_step:batched"] == data.n_test * 10.0 * cfg["evaluate"]["relax_steps"]
    (diff,) = units(jobs, "train", "diffusion")
    assert diff["train_step:diffusion"] == 1000 * math.ceil(data.n_train / 256)


def test_estimate_is_units_times_rates_and_reports_missing():
    cfg = load_run_config("config/demo.yaml", environ={})
    jobs = workload(cfg, DataSize(1528, 3.0))
    rates = Rates({"job": 2.0, "train_step:diffusion": 0.1})
    rows, missing = estimate(jobs, rates)
    totals = per_target(rows)
    n_jobs = {t: sum(j.units.get("job", 0) for j in jobs if j.target == t) for t in totals}
    assert totals["models"] == pytest.approx(2.0 * n_jobs["models"] + 0.1 * 10_000)
    assert totals["tables"] == pytest.approx(2.0 * n_jobs["tables"])
    assert "relax_atom_step:ase" in missing and "train_step:diffusion" not in missing
    # negative control: doubling a rate doubles its part
    rows2, _ = estimate(jobs, Rates({"job": 2.0, "train_step:diffusion": 0.2}))
    assert per_target(rows2)["models"] - totals["models"] == pytest.approx(1000.0)
    # a rate marked as a lower bound marks exactly the jobs that use it
    assert not any(r["lower_bound"] for r in rows)
    rows3, _ = estimate(jobs, Rates({"job": 2.0, "gpaw_cell_parallel": 57.0}, lower_bounds={"gpaw_cell_parallel"}))
    flagged = {r["label"] for r in rows3 if r["lower_bound"]}
    assert flagged == {j.label for j in jobs if "gpaw_cell_parallel" in j.units} and flagged


def test_rates_file_round_trip_and_bad_files(tmp_path):
    r = Rates({"job": 1.5}, {"job": "test"}, {"nproc": 2})
    p = tmp_path / "rates.json"
    p.write_text(json.dumps(r.to_dict()))
    assert Rates.load(p).seconds == {"job": 1.5} and Rates.load(p).lower_bounds == set()
    r.set("gpaw_cell_parallel", 57.0, "ledgers", lower_bound=True)
    p.write_text(json.dumps(r.to_dict()))
    assert Rates.load(p).lower_bounds == {"gpaw_cell_parallel"}
    r.set("gpaw_cell_parallel", 380.0, "an earlier screen")  # a direct measurement clears the flag
    assert r.lower_bounds == set()
    p.write_text(json.dumps({"format": "dosmatgen-rates", "seconds": {"job": float("nan")}}))
    with pytest.raises(ConfigError, match="finite"):
        Rates.load(p)
    p.write_text("{}")
    with pytest.raises(ConfigError, match="not a rates file"):
        Rates.load(p)


def test_plan_cli_with_saved_rates(tmp_path, capsys):
    from dosmatgen.cli import main

    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps(Rates({"job": 1.0, "train_step:diffusion": 0.01}).to_dict()))
    out = tmp_path / "plan.json"
    assert main(["plan", "--profile", "paper", "--rates", str(rates), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "50790 structures" in text and "not measured" in text and ">= " in text
    plan = json.loads(out.read_text())
    assert plan["targets"]["models"] == pytest.approx(3 + 0.01 * 1000 * math.ceil(30474 / 256))
    assert main(["plan", "--profile", "paper", "--rates", str(tmp_path / "missing.json")]) == 2
    assert "cannot read rates file" in capsys.readouterr().err
    assert "itself a lower bound" not in text  # negative control for the line below
    rates.write_text(json.dumps(Rates({"job": 1.0, "gpaw_cell_parallel": 57.0}, lower_bounds={"gpaw_cell_parallel"})
                                .to_dict()))
    assert main(["plan", "--profile", "demo", "--rates", str(rates)]) == 0
    text = capsys.readouterr().out
    assert "itself a lower bound: gpaw_cell_parallel" in text
    assert ">= " in [ln for ln in text.splitlines() if ln.startswith("studies") and "screen" in ln][0]
    for bad in (["--n-structures", "0"], ["--mean-atoms", "nan"], ["--threads", "0"]):
        assert main(["plan", "--profile", "paper", "--rates", str(rates), *bad]) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_combine_takes_model_units_only_from_the_model_rates():
    from dosmatgen.plan import combine

    model = Rates({"train_step:diffusion": 7.0, "job": 99.0})
    other = Rates({"train_step:diffusion": 0.1, "train_step:surrogate": 0.2, "job": 9.0, "match_pair": 0.05})
    both = combine(model, other)
    assert both.seconds == {"train_step:diffusion": 7.0, "job": 9.0, "match_pair": 0.05}


def test_recorded_targets_later_records_replace_earlier_ones(tmp_path):
    from dosmatgen.commands.plan import _recorded

    old, new, bad = tmp_path / "old.jsonl", tmp_path / "new.jsonl", tmp_path / "bad.jsonl"
    old.write_text('{"target": "models", "wall_s": 100}\n{"target": "tables", "wall_s": 60}\n'
                   '{"target": "studies without the screen", "wall_s": 10}\n{"target": "studies (the screen)", "wall_s": 5}\n')
    new.write_text('{"target": "tables", "wall_s": 45}\n')
    assert _recorded([str(old)]) == {"models": 100.0, "tables": 60.0, "studies": 15.0}
    assert _recorded([str(old), str(new)]) == {"models": 100.0, "tables": 45.0, "studies": 15.0}
    bad.write_text('{"target": "tables"}\n')
    with pytest.raises(ConfigError, match="cannot read run record"):
        _recorded([str(bad)])


def test_gpaw_seconds_prefer_an_earlier_screen_over_the_dataset_ledgers(tmp_path):
    from dosmatgen.plan import gpaw_seconds_per_cell

    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text('{"status": "done", "seconds_dft": 40}\n{"status": "failed", "seconds": 900}\n'
                      '{"status": "done", "seconds_dft": 60}\nnot json\n')
    ok, failed = tmp_path / "a.json", tmp_path / "b.json"
    ok.write_text('{"status": "ok", "seconds": 380}')
    failed.write_text('{"status": "failed: SCF", "seconds": 1800}')
    seconds, how, lower_bound = gpaw_seconds_per_cell([ledger])
    assert seconds == 50.0 and "ledger" in how and lower_bound  # failures left out
    seconds, how, lower_bound = gpaw_seconds_per_cell([ledger], [ok, failed])
    assert seconds == 380.0 and "earlier screen" in how and not lower_bound
    assert gpaw_seconds_per_cell([ledger], [failed])[0] == 50.0  # no successful screen cell: the ledgers
    assert gpaw_seconds_per_cell([]) is None


def test_rates_from_a_printed_plan_log(tmp_path, script):
    """The H200 rates file is rebuilt from what `plan` printed there: known values from the
    committed log, the scan's largest batch for the batched units, the rest filled and labelled."""
    mod = script("rates_from_plan_log")
    rates = mod.parse_plan_log((ROOT / "results/plan/h200/plan_measure.log").read_text(), "log")
    assert rates.seconds["train_step:diffusion"] == pytest.approx(0.029)
    assert rates.seconds["val_crystal:surrogate"] == pytest.approx(0.89e-3)
    assert rates.seconds["sample_chunk_step:classifier"] == pytest.approx(0.069)
    assert rates.seconds["relax_atom_step:ase"] == pytest.approx(7.30e-3)
    assert "relax_crystal_step:batched" not in rates.seconds  # it raised there: never read from the traceback
    assert "match_pair" not in rates.seconds                    # "not measured" lines give no rate
    # negative control: a line in another format is not read
    assert not mod.parse_plan_log("train diffusion 0.029 seconds per step", "x").seconds
    out = tmp_path / "rates.json"
    mod.main(["--log", str(ROOT / "results/plan/h200/plan_measure.log"),
              "--scan", str(ROOT / "results/plan/h200/relax_scan.log"),
              "--fill", str(ROOT / "results/plan/rates_cpu_demo_idle_screen.json"), "--out", str(out)])
    rebuilt = Rates.load(out)
    committed = Rates.load(ROOT / "results/plan/rates_paper_h200.json")
    assert rebuilt.seconds == committed.seconds
    assert "64 crystals" in rebuilt.how["relax_crystal_step:batched"]
    assert rebuilt.how["match_pair"].startswith("not measured on the host")


def test_a_failing_measurement_part_does_not_lose_the_others():
    """What a lent H200 showed: one part raising (a CUDA kernel missing) lost every rate measured
    before it. Now it is reported and skipped; an interrupt still stops the run."""
    from dosmatgen.plan import measure_part

    log, failed = [], []
    assert measure_part("a", lambda: None, log.append, failed)
    assert not measure_part("b", lambda: (_ for _ in ()).throw(NotImplementedError("no bool kernel")), log.append, failed)
    assert not measure_part("c", lambda: (_ for _ in ()).throw(ImportError("no pymatgen")), log.append, failed)
    assert failed == ["b: NotImplementedError: no bool kernel"]            # a missing package is no failure
    assert log == ["  b: FAILED, not measured (NotImplementedError: no bool kernel)",
                   "  c: not measured (ImportError: no pymatgen)"]
    with pytest.raises(KeyboardInterrupt):                                  # negative control
        measure_part("d", lambda: (_ for _ in ()).throw(KeyboardInterrupt()), log.append, failed)


def test_the_dft_judge_is_planned_as_its_own_target_only_when_asked():
    """``evaluate.dft_judge`` adds one GPAW job per judged set to ``tables_dft`` (n cells shared by
    the profile's threads); without it nothing is planned (negative control)."""
    import copy

    from dosmatgen.config import load_run_config
    from dosmatgen.plan import DataSize, workload

    cfg = copy.deepcopy(load_run_config("config/demo.yaml"))
    data = DataSize(n_store=1000, mean_atoms=5.0)
    cfg["evaluate"].pop("dft_judge", None)
    assert not [j for j in workload(cfg, data) if j.target == "tables_dft"]
    cfg["evaluate"]["dft_judge"] = {"n": 200, "sets": ["cfg_T1000", "classifier_T1000", "cfg_T200"]}
    jobs = [j for j in workload(cfg, data) if j.target == "tables_dft"]
    assert [j.label for j in jobs] == ["cfg_T1000", "classifier_T1000", "cfg_T200"]
    assert all(j.units["gpaw_cell_parallel"] == 200 / int(cfg["threads"]) for j in jobs)
