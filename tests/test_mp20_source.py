"""The MP-20 candidate source of the built-in builder: pool parsing, skip reasons, and a build with
a stand-in GPAW interpreter proving the shared ledger, shards and resume."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest

from dosmatgen.cli import main
from dosmatgen.data import builtin, mp20, offsite
from dosmatgen.data.store import load_meta, load_records
from dosmatgen.errors import DataError

NACL = [[0.0, 2.82, 2.82], [2.82, 0.0, 2.82], [2.82, 2.82, 0.0]]

#: A stand-in for the GPAW interpreter: ``python worker.py job.json out.npz`` writes what
#: gpaw_worker.py writes (a flat DOS), and fails the SCF for cells of exactly three atoms.
FAKE_WORKER = f"""#!{sys.executable}
import json, sys
import numpy as np
job = json.load(open(sys.argv[2]))
n = len(job["numbers"])
if n == 3:
    np.savez(sys.argv[3], status=np.array("error"), error=np.array("SCF did not converge after 2 attempts"))
    sys.exit(0)
np.savez(sys.argv[3], status=np.array("ok"), dos=np.full((n, len(job["energy_grid"])), 0.5),
         fermi=np.array(1.0), vbm=np.array(1.0), cbm=np.array(1.0), gap=np.array(0.0),
         reference_energy=np.array(1.0), spinpol=np.array(job["spinpol"]), magmom=np.array(0.0),
         weight_max_dev=np.array(1e-9), equivalent_classes=np.array(json.dumps(job["equivalent_classes"])),
         attempts=np.array("[]"), seconds=np.array(1.0), gpaw_version=np.array("22.8.0"))
"""


def _row(mid: str, species: list[str], frac: list[list[float]], lattice=None, **extra) -> dict:
    row = {"material_id": mid, "formula": "".join(species), "lattice": NACL if lattice is None else lattice,
           "species": species, "frac_coords": frac, "formation_energy_per_atom": -1.5, "band_gap": 4.0,
           "e_above_hull": 0.0, "spacegroup": 225}
    row.update(extra)
    return row


def _pool(path, rows: list) -> str:
    path.write_text(json.dumps({"source": "test", "n": len(rows), "structures": rows}))
    return str(path)


@pytest.fixture
def small_pool(tmp_path) -> str:
    """Three labellable rows (1, 2 and 3 atoms; the stand-in worker fails the 3-atom one)."""
    return _pool(tmp_path / "pool.json", [
        _row("mp-3", ["Na", "Cl", "Cl"], [[0, 0, 0], [.5, .5, .5], [.25, .25, .25]]),
        _row("mp-1", ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
        _row("mp-2", ["Cu"], [[0, 0, 0]], lattice=[[0, 1.8, 1.8], [1.8, 0, 1.8], [1.8, 1.8, 0]]),
    ])


@pytest.fixture
def fake_gpaw(tmp_path) -> str:
    path = tmp_path / "fake_gpaw_python"
    path.write_text(FAKE_WORKER)
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(not mp20.DEFAULT_POOL.exists(), reason="the shared MP-20 pool is not on this machine")
def test_real_pool_parses_with_unique_ids_cheapest_first():
    cands, skipped = mp20.candidates(mp20.DEFAULT_POOL, max_atoms=20)
    assert len(cands) + len(skipped) == 1343
    assert len(cands) == 819  # rows whose elements all have a GPAW setup (761 use the prototypes' 60)
    assert mp20.skip_summary(skipped) == {mp20.NO_GPAW_SETUP: 524}
    ids = [c.structure_id for c in cands]
    assert len(set(ids)) == len(ids) and all(c.structure_id == f"mp20-{c.material_id}" for c in cands)
    assert {c.material_id.split("-")[0] for c in cands} <= {"mp", "mvc"}  # MP-20 has a few mvc- ids
    costs = [c.cost for c in cands]
    assert costs == sorted(costs) and cands[0].num_atoms == 1
    assert max(c.num_atoms for c in cands) == 20
    default, _ = mp20.candidates()
    assert len(default) == 506 and max(c.num_atoms for c in default) == mp20.DEFAULT_MAX_ATOMS
    assert [c.structure_id for c in mp20.candidates(max_atoms=8, n_max=10)[0]] == ids[:10]
    rec = next(c for c in cands if c.structure_id == "mp20-mp-21").build()
    assert rec.provenance == {"source": "mp20", "material_id": "mp-21", "formula": "Ca",
                              "mp_formation_energy_per_atom": pytest.approx(0.02354205), "mp_band_gap": 0.0,
                              "mp_e_above_hull": pytest.approx(0.02354205), "spacegroup": 229}


def test_skip_reasons_of_bad_rows(tmp_path):
    rows = [
        _row("mp-ok", ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
        _row("mp-la", ["La", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
        _row("mp-xx", ["Xx"], [[0, 0, 0]]),
        _row("mp-close", ["Na", "Cl"], [[0, 0, 0], [.05, .05, .0]]),
        _row("mp-shape", ["Na"], [[0, 0, 0]], lattice=[[4, 0, 0], [0, 4, 0]]),
        _row("mp-nan", ["Na"], [[0, 0, 0]], lattice=[[4, 0, 0], [0, float("nan"), 0], [0, 0, 4]]),
        _row("mp-flat", ["Na"], [[0, 0, 0]], lattice=[[4, 0, 0], [0, 4, 0], [4, 4, 0]]),
        _row("mp-text", ["Na"], [[0, 0, 0]], lattice="cubic"),
        _row("mp-coords", ["Na", "Cl"], [[0, 0, 0]]),
        {"formula": "NaCl"},
        _row("mp-ok", ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
    ]
    cands, skipped = mp20.candidates(_pool(tmp_path / "pool.json", rows), max_atoms=None)
    assert [c.structure_id for c in cands] == ["mp20-mp-ok"]
    reasons = dict(skipped)
    assert reasons["mp20-mp-la"] == "no GPAW setup: La" and reasons["mp20-mp-xx"] == "no GPAW setup: Xx"
    assert reasons["mp20-mp-close"].startswith("overlapping atoms: minimum distance 0.")
    for sid in ("mp20-mp-shape", "mp20-mp-nan", "mp20-mp-flat", "mp20-mp-text"):
        assert reasons[sid].startswith("malformed lattice: "), sid
    assert "zero volume" in reasons["mp20-mp-flat"] and "NaN" in reasons["mp20-mp-nan"]
    assert reasons["mp20-mp-coords"].startswith("malformed row: frac_coords")
    assert reasons["mp20-row9"] == "malformed row: no material_id"
    assert mp20.skip_summary(skipped) == {"no GPAW setup": 2, "overlapping atoms": 1, "malformed lattice": 4,
                                          "malformed row": 2, "duplicate material_id": 1}


def test_bad_pool_files_and_options(tmp_path, capsys):
    with pytest.raises(DataError, match="does not exist"):
        mp20.candidates(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot be read as JSON"):
        mp20.candidates(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(DataError, match="no 'structures' list"):
        mp20.candidates(tmp_path / "list.json")
    with pytest.raises(DataError, match="--max-atoms must be >= 1"):
        mp20.candidates(_pool(tmp_path / "p.json", []), max_atoms=0)
    with pytest.raises(DataError, match="unknown candidate source"):
        builtin.source_candidates("nope")
    code = main(["data", "build-builtin", "--source", "mp20", "--pool", str(tmp_path / "none.json"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err


def test_cli_options():
    p = argparse.ArgumentParser()
    builtin.add_build_arguments(p)
    args = p.parse_args([])
    assert args.source == "prototypes" and args.pool is None and args.max_atoms == mp20.DEFAULT_MAX_ATOMS
    args = p.parse_args(["--source", "mp20", "--pool", "x.json", "--max-atoms", "8", "--part", "1/2"])
    assert (args.source, args.pool, args.max_atoms, args.part) == ("mp20", "x.json", 8, "1/2")


def test_build_shares_ledger_and_resumes(tmp_path, small_pool, fake_gpaw, capsys):
    """Part 1/2 labels the 1st and 3rd cheapest rows, the unpartitioned run only the rest; a
    rerun has nothing to do.  Records keep MP's geometry (no relaxation) and carry source mp20."""
    out = tmp_path / "shards"
    kw = {"n_max": 4000, "workers": 1, "progress": False, "source": "mp20", "pool": small_pool,
          "engine_kwargs": {"python": fake_gpaw}}
    assert builtin.build(out, part=(1, 2), **kw) == {"done": 1, "failed": 1, "todo": 2}
    assert "SCF did not converge" in capsys.readouterr().err
    ledger = builtin.read_ledger(out)
    assert ledger["mp20-mp-2"]["status"] == "done" and ledger["mp20-mp-3"]["status"] == "failed"
    assert ledger["mp20-mp-2"]["source"] == "mp20" and ledger["mp20-mp-2"]["material_id"] == "mp-2"
    assert ledger["mp20-mp-2"]["shard"] == "shard-mp20-part1of2-00001.npz"
    assert builtin.build(out, **kw) == {"done": 1, "failed": 0, "todo": 1}
    assert builtin.build(out, **kw) == {"done": 0, "failed": 0, "todo": 0}
    assert sorted(p.name for p in out.iterdir()) == [
        "ledger-mp20-part1of2.jsonl", "ledger-mp20.jsonl", "shard-mp20-00001.npz", "shard-mp20-part1of2-00001.npz"]
    (rec,) = load_records(out / "shard-mp20-00001.npz")
    assert rec.structure_id == "mp20-mp-1" and rec.dos.shape == (2, 400)
    np.testing.assert_allclose(rec.lattice, NACL)
    np.testing.assert_allclose(rec.frac_coords, [[0, 0, 0], [.5, .5, .5]])
    assert rec.provenance["source"] == "mp20" and rec.provenance["mp_band_gap"] == 4.0
    assert rec.provenance["engine"] == "gpaw" and "mlff" not in rec.provenance
    meta = load_meta(out / "shard-mp20-00001.npz")
    assert meta["source"] == "mp20" and meta["mlff"] == "none" and meta["pool"] == small_pool
    assert meta["protocol"]["basis"] == "dzp"
    merged = builtin.merge(out, tmp_path / "store.npz")
    assert merged["sources"] == {"mp20": 2} and merged["prototypes"] == [] and merged["n_failed"] == 1


def test_export_and_ingest_jobs(tmp_path, small_pool):
    shards, jobs = tmp_path / "shards", tmp_path / "jobs"
    counts = offsite.export_jobs(shards, jobs, n=2, source="mp20", pool=small_pool, progress=False)
    assert counts == {"written": 2, "failed": 0}
    meta = json.loads((jobs / "mp20-mp-2.meta.json").read_text())
    assert meta["source"] == "mp20" and meta["material_id"] == "mp-2" and meta["mlff"] == "none"
    job = json.loads((jobs / "mp20-mp-1.job.json").read_text())
    np.savez(jobs / "mp20-mp-1.out.npz", status=np.array("ok"), dos=np.full((2, 400), 0.5), fermi=np.array(1.0),
             vbm=np.array(1.0), cbm=np.array(1.0), gap=np.array(0.0), reference_energy=np.array(1.0),
             spinpol=np.array(False), magmom=np.array(0.0), weight_max_dev=np.array(1e-9),
             equivalent_classes=np.array(json.dumps(job["equivalent_classes"])), attempts=np.array("[]"),
             seconds=np.array(1.0), gpaw_version=np.array("22.8.0"))
    assert offsite.ingest_jobs(jobs, shards) == {"done": 1, "failed": 0, "pending": 1, "retry": 0}
    entry = builtin.read_ledger(shards)["mp20-mp-1"]
    assert entry["source"] == "mp20" and entry["material_id"] == "mp-1" and "prototype" not in entry
    (rec,) = load_records(shards / "shard-offsite-00001.npz")
    assert rec.provenance["source"] == "mp20" and load_meta(shards / "shard-offsite-00001.npz")["source"] == "mp20"
