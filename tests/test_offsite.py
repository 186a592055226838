"""Labelling elsewhere: export relaxed GPAW jobs, ingest the worker's outputs into the build."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dev_scripts.builtin import build as builtin
from dev_scripts.builtin import offsite
from dev_scripts.builtin.cli import main as builtin_main
from dosmatgen.data.store import load_records
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import DataError


def _worker_output(path, job, status="ok", error=""):
    """What gpaw_worker.py writes: the arrays of one finished (or failed) job."""
    if status != "ok":
        np.savez(path, status=np.array(status), error=np.array(error))
        return
    n = len(job["numbers"])
    dos = np.tile(np.linspace(0.0, 1.0, N_DOS), (n, 1))
    np.savez(path, status=np.array("ok"), dos=dos, fermi=np.array(1.5), vbm=np.array(1.5), cbm=np.array(1.5),
             gap=np.array(0.0), reference_energy=np.array(1.5), spinpol=np.array(False), magmom=np.array(0.0),
             weight_max_dev=np.array(1e-9), n_electrons=np.array(8.0), equivalent_classes=np.array("[[0], [1]]"),
             attempts=np.array("[]"), seconds=np.array(42.0), gpaw_version=np.array("22.8.0"))


@pytest.fixture
def exported(tmp_path):
    """Three candidates exported without relaxation (mlff none), into an empty build."""
    shards, jobs = tmp_path / "shards", tmp_path / "jobs"
    counts = offsite.export_jobs(shards, jobs, n=3, skip=1, n_max=10, mlff="none", progress=False)
    assert counts == {"written": 3, "failed": 0}
    return shards, jobs


def test_export_writes_the_engines_job_and_skips_what_is_there(exported):
    shards, jobs = exported
    ids = [c.structure_id for c in builtin.candidates(0, 10)][1:4]  # skip=1
    assert sorted(p.name[: -len(".job.json")] for p in jobs.glob("*.job.json")) == sorted(ids)
    job = json.loads((jobs / f"{ids[0]}.job.json").read_text())
    assert job["basis"] == "dzp" and len(job["energy_grid"]) == N_DOS and len(job["numbers"]) >= 2
    meta = json.loads((jobs / f"{ids[0]}.meta.json").read_text())
    assert meta["id"] == ids[0] and meta["protocol"]["basis"] == "dzp"
    before = (jobs / f"{ids[0]}.job.json").stat().st_mtime_ns
    assert offsite.export_jobs(shards, jobs, n=3, skip=1, n_max=10, mlff="none", progress=False)["written"] == 0
    assert (jobs / f"{ids[0]}.job.json").stat().st_mtime_ns == before


def test_ingest_records_done_failed_and_leaves_the_rest(exported):
    shards, jobs = exported
    ids = sorted(p.name[: -len(".meta.json")] for p in jobs.glob("*.meta.json"))
    job = {sid: json.loads((jobs / f"{sid}.job.json").read_text()) for sid in ids}
    _worker_output(jobs / f"{ids[0]}.out.npz", job[ids[0]])
    _worker_output(jobs / f"{ids[1]}.out.npz", job[ids[1]], "error", "SCF did not converge after 2 attempts")
    counts = offsite.ingest_jobs(jobs, shards, host="elsewhere")
    assert counts == {"done": 1, "failed": 1, "pending": 1, "retry": 0}
    ledger = builtin.read_ledger(shards)  # the build sees the offsite ledger
    assert ledger[ids[0]]["status"] == "done" and ledger[ids[0]]["host"] == "elsewhere"
    assert ledger[ids[1]]["status"] == "failed" and "SCF" in ledger[ids[1]]["reason"]
    (rec,) = load_records(shards / "shard-offsite-00001.npz")
    assert rec.structure_id == ids[0] and rec.dos.shape == (len(job[ids[0]]["numbers"]), N_DOS)
    np.testing.assert_allclose(rec.frac_coords, job[ids[0]]["scaled_positions"])
    assert rec.provenance["engine"] == "gpaw" and rec.provenance["version"] == "22.8.0"
    # twice adds nothing; the last job's output arrives later
    assert offsite.ingest_jobs(jobs, shards)["done"] == 0
    _worker_output(jobs / f"{ids[2]}.out.npz", job[ids[2]])
    assert offsite.ingest_jobs(jobs, shards) == {"done": 1, "failed": 0, "pending": 0, "retry": 0}
    assert builtin.merge(shards, shards.parent / "store.npz")["n_records"] == 2


def test_overcomplete_basis_is_left_for_a_local_build(exported):
    shards, jobs = exported
    sid = sorted(p.name[: -len(".meta.json")] for p in jobs.glob("*.meta.json"))[0]
    _worker_output(jobs / f"{sid}.out.npz", {}, "error", "LinAlgError: overlap matrix is not positive definite")
    assert offsite.ingest_jobs(jobs, shards)["retry"] == 1
    assert sid not in builtin.read_ledger(shards)


def test_cli_and_bad_input(tmp_path, capsys):
    with pytest.raises(DataError, match="not a folder of exported jobs"):
        offsite.ingest_jobs(tmp_path / "nope", tmp_path / "shards")
    assert builtin_main(["ingest-jobs", "--jobs", str(tmp_path), "--shards", str(tmp_path / "s")]) == 0
    assert "ingested 0 labelled" in capsys.readouterr().out


def test_run_jobs_script_runs_cheapest_first_and_skips_finished(tmp_path):
    """scripts/run_jobs.sh with a stand-in interpreter that only writes the output file."""
    import os
    import subprocess

    from dosmatgen.config import REPO_ROOT

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for sid, cost in (("b", 50.0), ("a", 900.0), ("c", 3.5)):
        (jobs / f"{sid}.job.json").write_text("{}")
        (jobs / f"{sid}.meta.json").write_text(json.dumps({"id": sid, "cost": cost}))
    fake = tmp_path / "fake_python"
    fake.write_text('#!/bin/sh\n# args: worker job out\ntouch "$3"\n')
    fake.chmod(0o755)
    run = [os.environ.get("BASH", "bash"), str(REPO_ROOT / "scripts" / "run_jobs.sh"), str(jobs), "1", "10"]
    out = subprocess.run(run, env=dict(os.environ, PYTHON=str(fake)), capture_output=True, text=True, check=True)
    order = [line.split("] ")[1].split(":")[0] for line in out.stdout.splitlines()]
    assert order == ["c", "b", "a"] and all((jobs / f"{s}.out.npz").exists() for s in "abc")
    again = subprocess.run(run, env=dict(os.environ, PYTHON=str(fake)), capture_output=True, text=True, check=True)
    assert again.stdout == ""  # every job has its output: nothing runs


@pytest.mark.parametrize("n, skip", [(-1, 0), (0, 0), (2, -3)])
def test_export_refuses_a_count_that_slices_wrongly(tmp_path, n, skip):
    """``--n -1`` used to export every remaining candidate but one (a negative slice end)."""
    jobs = tmp_path / "jobs"
    with pytest.raises(DataError, match="n >= 1 and skip >= 0"):
        offsite.export_jobs(tmp_path / "shards", jobs, n=n, skip=skip, n_max=10, mlff="none", progress=False)
    assert not jobs.exists()  # refused before any work
