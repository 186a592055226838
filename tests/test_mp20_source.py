"""The MP-20 candidate source of the built-in builder: pool parsing, skip reasons, and a build with
a stand-in GPAW interpreter proving the shared ledger, shards and resume; the source of a record
(id prefix), the split stratified by source (the prototype-only split unchanged), ``data info`` by
source, and the pure functions of ``experiments/mp20_parity/mp20_parity.py``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from dosmatgen.cli import main
from dosmatgen.config import load_run_config
from dev_scripts.builtin import build as builtin
from dev_scripts.builtin import mp20, offsite
from dev_scripts.builtin.cli import main as builtin_main
from dosmatgen.data.info import dataset_summary, format_summary
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.split import SPLIT_NAMES, load_id_list, make_split, record_source, source_counts, split_sizes
from dosmatgen.data.store import DOSStore, load_meta, load_records, save_records
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
    # spin-polarised MP-20 cells are measured to be far slower: every one comes after every other cell
    first_magnetic = next(i for i, c in enumerate(cands) if c.magnetic)
    assert not any(c.magnetic for c in cands[:first_magnetic]) and all(c.magnetic for c in cands[first_magnetic:])
    assert max(c.num_atoms for c in cands[:first_magnetic]) == 20 and cands[first_magnetic].num_atoms == 2
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
    code = builtin_main(["build", "--source", "mp20", "--pool", str(tmp_path / "none.json"),
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


def test_retry_failed_redoes_only_matching_failures(tmp_path, small_pool, fake_gpaw):
    """After a protocol fix, ``retry_failed`` redoes the failures whose reason matches, nothing
    else; the new label supersedes the failure, and a done entry is never undone by a failure
    read later from another ledger."""
    out = tmp_path / "shards"
    kw = {"n_max": 4000, "workers": 1, "progress": False, "source": "mp20", "pool": small_pool,
          "engine_kwargs": {"python": fake_gpaw}}
    assert builtin.build(out, **kw) == {"done": 2, "failed": 1, "todo": 3}
    assert builtin.build(out, retry_failed="OverflowError", **kw)["todo"] == 0  # no such failure
    with pytest.raises(DataError, match="retry-failed"):
        builtin.build(out, retry_failed="  ", **kw)
    fixed = tmp_path / "fixed_gpaw_python"
    fixed.write_text(FAKE_WORKER.replace("if n == 3:", "if False:"))
    fixed.chmod(0o755)
    kw["engine_kwargs"] = {"python": str(fixed)}
    assert builtin.build(out, retry_failed="SCF did not converge", **kw) == {"done": 1, "failed": 0, "todo": 1}
    assert builtin.build(out, retry_failed="SCF did not converge", **kw)["todo"] == 0
    assert builtin.read_ledger(out)["mp20-mp-3"]["status"] == "done"
    late = {"id": "mp20-mp-3", "status": "failed", "reason": "GPAWEngineError: timed out", "source": "mp20"}
    (out / "ledger-zzz.jsonl").write_text(json.dumps(late) + "\n")  # read after ledger-mp20.jsonl
    assert builtin.read_ledger(out)["mp20-mp-3"]["status"] == "done"
    merged = builtin.merge(out, tmp_path / "store.npz")
    assert merged["sources"] == {"mp20": 3} and merged["n_failed"] == 0
    assert "--retry-failed" in _build_help()


def _build_help() -> str:
    parser = argparse.ArgumentParser()
    builtin.add_build_arguments(parser)
    return parser.format_help()


def _worker_output(jobs: Path, sid: str) -> None:
    """What gpaw_worker.py writes for the exported job ``sid`` when it succeeds (a flat DOS)."""
    job = json.loads((jobs / f"{sid}.job.json").read_text())
    np.savez(jobs / f"{sid}.out.npz", status=np.array("ok"), dos=np.full((len(job["numbers"]), 400), 0.5),
             fermi=np.array(1.0), vbm=np.array(1.0), cbm=np.array(1.0), gap=np.array(0.0),
             reference_energy=np.array(1.0), spinpol=np.array(False), magmom=np.array(0.0),
             weight_max_dev=np.array(1e-9), equivalent_classes=np.array(json.dumps(job["equivalent_classes"])),
             attempts=np.array("[]"), seconds=np.array(1.0), gpaw_version=np.array("22.8.0"))


def test_export_and_ingest_jobs(tmp_path, small_pool):
    shards, jobs = tmp_path / "shards", tmp_path / "jobs"
    counts = offsite.export_jobs(shards, jobs, n=2, source="mp20", pool=small_pool, progress=False)
    assert counts == {"written": 2, "failed": 0}
    meta = json.loads((jobs / "mp20-mp-2.meta.json").read_text())
    assert meta["source"] == "mp20" and meta["material_id"] == "mp-2" and meta["mlff"] == "none"
    _worker_output(jobs, "mp20-mp-1")
    assert offsite.ingest_jobs(jobs, shards) == {"done": 1, "failed": 0, "pending": 1, "retry": 0}
    entry = builtin.read_ledger(shards)["mp20-mp-1"]
    assert entry["source"] == "mp20" and entry["material_id"] == "mp-1" and "prototype" not in entry
    (rec,) = load_records(shards / "shard-offsite-00001.npz")
    assert rec.provenance["source"] == "mp20" and load_meta(shards / "shard-offsite-00001.npz")["source"] == "mp20"

    # a failure is recorded once however often it is ingested; exported again for a retry, its
    # successful output supersedes it
    np.savez(jobs / "mp20-mp-2.out.npz", status=np.array("error"), error=np.array("OverflowError: inf"))
    assert offsite.ingest_jobs(jobs, shards)["failed"] == 1
    assert offsite.ingest_jobs(jobs, shards) == {"done": 0, "failed": 0, "pending": 0, "retry": 0}
    assert len((shards / "ledger-offsite.jsonl").read_text().splitlines()) == 2
    assert offsite.export_jobs(shards, tmp_path / "again", n=5, source="mp20", pool=small_pool,
                               progress=False)["written"] == 1  # only mp-3, never exported
    retry = offsite.export_jobs(shards, tmp_path / "retry", n=5, source="mp20", pool=small_pool, progress=False,
                                retry_failed="OverflowError")
    assert retry["written"] == 2 and (tmp_path / "retry" / "mp20-mp-2.job.json").exists()
    _worker_output(jobs, "mp20-mp-2")
    assert offsite.ingest_jobs(jobs, shards)["done"] == 1
    assert builtin.read_ledger(shards)["mp20-mp-2"]["status"] == "done"


# ---- the source of a record, the stratified split, info by source (issue 18) -------------------
ROOT = Path(__file__).resolve().parents[1]
PROTO = [f"builtin-rocksalt-X{k}-Y" for k in range(40)]
REAL = [f"mp20-mp-{k}" for k in range(1, 11)]


def _old_make_split(ids, seed=0, fractions=(0.6, 0.2, 0.2)):
    """The split as it was before stratification (frozen copy): sort, permute, cut."""
    ordered = sorted(ids)
    shuffled = [ordered[k] for k in np.random.default_rng(seed).permutation(len(ids))]
    out, start = {}, 0
    for name, size in zip(SPLIT_NAMES, split_sizes(len(ids), fractions)):
        out[name] = shuffled[start:start + size]
        start += size
    return out


def test_record_source_from_the_id_prefix():
    assert [record_source(i) for i in ("builtin-L12-Ni-Au", "mp20-mp-21", "mp20-mvc-1", "mp-149", "mvc-3",
                                       "rs-NaCl-0", "")] == ["prototypes", "mp20", "mp20", "mp", "mp", "other", "other"]
    assert source_counts(PROTO + REAL) == {"prototypes": 40, "mp20": 10}


def test_split_is_stratified_by_source():
    for seed in range(5):
        s = make_split(REAL + PROTO, seed=seed)
        assert sorted(sum(s.values(), [])) == sorted(PROTO + REAL)
        for name, n in zip(SPLIT_NAMES, split_sizes(len(REAL))):  # each source with the same fractions
            assert sum(record_source(i) == "mp20" for i in s[name]) == n > 0
        # the prototypes keep the prototype-only split, bit for bit and in order
        assert {k: [i for i in v if i in set(PROTO)] for k, v in s.items()} == _old_make_split(PROTO, seed)
        assert {k: [i for i in v if i in set(REAL)] for k, v in s.items()} == _old_make_split(REAL, seed)
    # one source: exactly the old split (and stratify=False is the old split of everything)
    for ids in (PROTO, REAL, [f"mp-{k}" for k in range(100)], [f"id{k}" for k in range(7)]):
        assert make_split(ids, seed=3) == _old_make_split(ids, 3) == make_split(ids, seed=3, stratify=False)
    # every part gets a real crystal from 4 of them on (default fractions)
    assert all(make_split(PROTO + REAL[:4], seed=seed)[k] for seed in range(10) for k in SPLIT_NAMES)


def test_every_prefix_of_a_part_keeps_the_sources_shares():
    """``--limit N`` takes a part's first N ids: with 300 prototypes and 60 real crystals every
    prefix of the test part holds the real share to within one crystal (the concatenated order,
    the negative control, gives the first 50 no real crystal at all)."""
    proto = [f"builtin-p{k}" for k in range(300)]
    real = [f"mp20-mp-{k}" for k in range(60)]
    test = make_split(proto + real, seed=0)["test"]
    n_real = sum(record_source(i) == "mp20" for i in test)
    for n in range(1, len(test) + 1):
        got = sum(record_source(i) == "mp20" for i in test[:n])
        assert abs(got - n * n_real / len(test)) <= 1, n
    concatenated = [i for i in test if i.startswith("builtin-")] + [i for i in test if i.startswith("mp20-")]
    assert not any(record_source(i) == "mp20" for i in concatenated[:50])


def test_split_negative_controls():
    ids = [f"builtin-p{k}" for k in range(100)] + REAL[:4]
    # unstratified, four real crystals among 104 miss some part for most seeds; stratified never
    missing = [seed for seed in range(20)
               if not all(any(record_source(i) == "mp20" for i in make_split(ids, seed=seed, stratify=False)[k])
                          for k in SPLIT_NAMES)]
    assert len(missing) >= 10
    assert all(any(record_source(i) == "mp20" for i in make_split(ids, seed=seed)[k])
               for seed in missing for k in SPLIT_NAMES)
    # with three real crystals there are not enough: val gets none (sizes 2, 0, 1), said in the docs
    s = make_split(PROTO + REAL[:3], seed=0)
    assert [sum(record_source(i) == "mp20" for i in s[k]) for k in SPLIT_NAMES] == [2, 0, 1]
    assert make_split(PROTO + REAL, seed=0) != _old_make_split(PROTO + REAL, 0)


@pytest.mark.skipif(not (ROOT / "results" / "demo_run" / "split.json").exists()
                    or not (ROOT / "resources" / "builtin_dos.npz").exists(), reason="no recorded demo split")
def test_recorded_demo_split_is_the_stores():
    """The demo's recorded split (results/demo_run/split.json, seed 0) is the source-stratified split
    of today's built-in store, and its prototypes are exactly the split the prototype-only store
    gave: the earlier recordings' test prototypes are the same crystals in the same order."""
    recorded = json.loads((ROOT / "results" / "demo_run" / "split.json").read_text())
    ids = list(DOSStore(ROOT / "resources" / "builtin_dos.npz").ids)
    assert recorded["n_structures"] == len(ids)
    own = recorded.get("source_fractions")  # the demo trains on more of the real crystals (issue 35)
    demo = load_run_config(ROOT / "config" / "demo.yaml", environ={})["data"]
    assert own == {k: list(v) for k, v in demo["source_split"].items()} and recorded["fractions"] == demo["split"]
    s = make_split(ids, seed=recorded["seed"], fractions=recorded["fractions"], source_fractions=own)
    assert all(s[k] == recorded[k] for k in SPLIT_NAMES)
    assert [recorded["sources"][k]["mp20"] for k in SPLIT_NAMES] == [375, 25, 100]
    protos = [i for i in ids if record_source(i) == "prototypes"]
    alone = make_split(protos, seed=recorded["seed"], fractions=recorded["fractions"])
    assert all([i for i in recorded[k] if record_source(i) == "prototypes"] == alone[k] for k in SPLIT_NAMES)
    assert all(any(record_source(i) == "mp20" for i in recorded[k]) for k in SPLIT_NAMES)
    # negative control: another seed gives another split
    other = make_split(ids, seed=recorded["seed"] + 1, fractions=recorded["fractions"], source_fractions=own)
    assert other["test"] != recorded["test"]
    # the ids the demo's split is fixed on (crystals merged later train only) are the recorded split's
    base = load_id_list(ROOT / demo["builtin_split_ids"])
    assert sorted(base) == sorted(i for k in SPLIT_NAMES for i in recorded[k])
    fixed = make_split(ids, seed=recorded["seed"], fractions=recorded["fractions"], source_fractions=own, base_ids=base)
    assert all(fixed[k] == recorded[k] for k in SPLIT_NAMES)


def _mixed_records():
    cells = {"NaCl": ([11, 17], [[0, 0, 0], [.5, .5, .5]]), "Cu": ([29], [[0, 0, 0]]),
             "Au3Ni": ([28, 79, 79, 79], [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])}
    recs = []
    for k in range(6):
        z, x = cells["NaCl"] if k % 2 else cells["Au3Ni"]
        recs.append(CrystalRecord(f"builtin-proto-{k}", z, x, np.eye(3) * 4.0, np.full((len(z), 400), .1),
                                  {"source": "builtin", "engine": "gpaw"}))
    for k in range(5):
        z, x = cells["Cu"] if k < 3 else cells["NaCl"]
        recs.append(CrystalRecord(f"mp20-mp-{k}", z, x, np.eye(3) * 4.0, np.full((len(z), 400), .1),
                                  {"source": "mp20", "engine": "gpaw"}))
    return recs


def test_info_by_source(tmp_path, capsys):
    recs = _mixed_records()
    s = dataset_summary(recs)
    assert s["by_source"]["prototypes"]["n_structures"] == 6 and s["by_source"]["mp20"]["n_structures"] == 5
    assert s["by_source"]["mp20"]["size_histogram"] == {1: 3, 2: 2}
    assert s["by_source"]["mp20"]["element_counts"] == {"Na": 2, "Cl": 2, "Cu": 3}
    assert s["by_source"]["prototypes"]["size_histogram"] == {2: 3, 4: 3}
    text = format_summary(s)
    assert "prototypes: 6 structures (6 with site DOS), 18 atoms, 4 elements" in text
    assert "mp20: 5 structures (5 with site DOS), 7 atoms, 3 elements" in text
    assert "atoms per cell: 1: 3, 2: 2" in text and "elements: Na 2, Cl 2, Cu 3" in text
    # one source: one line, no repetition of the whole-store histogram
    one = format_summary(dataset_summary(recs[:6]))
    assert "prototypes: 6 structures (6 with site DOS), 18 atoms, 4 elements (the whole dataset, as above)" in one
    # the CLI, on a store and with the JSON summary (a store gives the same numbers as the records)
    save_records(tmp_path / "mixed.npz", recs)
    assert main(["data", "info", "--store", str(tmp_path / "mixed.npz"), "--json", str(tmp_path / "s.json"),
                 "--figure", str(tmp_path / "hist.png")]) == 0
    out = capsys.readouterr().out
    assert "by source" in out and "mp20: 5 structures" in out
    assert json.loads((tmp_path / "s.json").read_text())["by_source"]["mp20"]["size_histogram"] == {"1": 3, "2": 2}


def test_cli_split_stratified_and_one_source_file_unchanged(tmp_path, capsys):
    recs = _mixed_records()
    save_records(tmp_path / "mixed.npz", recs)
    save_records(tmp_path / "proto.npz", recs[:6])
    assert main(["data", "split", "--store", str(tmp_path / "mixed.npz"), "--out", str(tmp_path / "m.json")]) == 0
    assert "stratified by source: train prototypes 4, mp20 3; val prototypes 1, mp20 1; test prototypes 1, mp20 1" \
        in capsys.readouterr().out
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["sources"]["val"] == {"prototypes": 1, "mp20": 1}
    assert main(["data", "split", "--store", str(tmp_path / "proto.npz"), "--out", str(tmp_path / "p.json")]) == 0
    p = json.loads((tmp_path / "p.json").read_text())
    assert set(p) == {"train", "val", "test", "seed", "fractions", "store", "n_structures"}  # as before
    assert {k: p[k] for k in SPLIT_NAMES} == _old_make_split([r.structure_id for r in recs[:6]])


@pytest.mark.skipif(not (ROOT / "resources" / "builtin").is_dir(), reason="no built-in shards")
def test_id_source_agrees_with_provenance_in_the_shards():
    """The id prefix and the provenance ``source`` of every labelled MP-20 record agree."""
    paths = sorted((ROOT / "resources" / "builtin").glob("shard-mp20-*.npz"))[:3]
    if not paths:
        pytest.skip("no MP-20 shards yet")
    for p in paths:
        st = DOSStore(p)
        assert all(record_source(sid) == "mp20" and st.provenance(i)["source"] == "mp20"
                   for i, sid in enumerate(st.ids))


# ---- the scripts: parity's pure functions, the labelling-cost estimate -----------------------------
def test_parity_gap_excludes_and_counts_infinite_gaps(script):
    P = script("experiments/mp20_parity/mp20_parity")
    ours = json.loads('{"a": 1.0, "b": Infinity, "c": 0.05, "d": 0.5, "e": NaN, "f": 2.0}')  # the ledger's JSON
    mp = {"a": 1.2, "b": 16.6, "c": 0.0, "d": 0.0, "e": 0.0, "f": None}
    g = P.gap_parity(ours, mp)
    assert g["n_total"] == 6 and g["n_infinite_ours"] == 2 and g["excluded_ours"] == ["b", "e"]
    assert g["n_missing_mp"] == 1 and g["excluded_mp"] == ["f"] and g["ids"] == ["a", "c", "d"] and g["n"] == 3
    assert g["mae"] == pytest.approx((0.2 + 0.05 + 0.5) / 3, abs=1e-4)
    assert g["confusion"] == {"metal_both": 1, "nonmetal_both": 1, "metal_ours_only": 0, "metal_mp_only": 1}
    assert g["n_class_agree"] == 2 and g["n_mp_nonmetal"] == 1 and g["mae_mp_nonmetal"] == pytest.approx(0.2)
    assert all(math.isfinite(v) for v in (g["mae"], g["mean_signed"]))
    # nothing finite: no numbers, no crash
    g = P.gap_parity({"x": float("inf")}, {"x": 1.0})
    assert g["n"] == 0 and g["mae"] is None and g["n_infinite_ours"] == 1


def test_parity_formation_offset_and_corrections(script):
    P = script("experiments/mp20_parity/mp20_parity")
    ours = {"ox": -2.0, "metal": -0.3, "failed": None}
    mp = {"ox": -2.7, "metal": -0.2, "failed": -1.0}
    e = P.ef_parity(ours, mp, {"ox": -0.687, "metal": 0.0})
    assert e["n"] == 2 and e["n_no_value"] == 1 and e["excluded"] == ["failed"]
    assert e["mean_offset"] == pytest.approx((0.7 - 0.1) / 2) and e["mae"] == pytest.approx(0.4)
    assert e["n_corrected"] == 1 and e["mean_offset_corrected_subset"] == pytest.approx(0.7)
    assert e["mae_corrected"] == pytest.approx((0.013 + 0.1) / 2, abs=1e-4)
    assert e["mean_offset_uncorrected_subset"] == pytest.approx(-0.1)


def test_parity_mp2020_correction(script):
    from pymatgen.core import Lattice, Structure

    P = script("experiments/mp20_parity/mp20_parity")
    mgo = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [.5, .5, .5]])
    assert P.mp2020_correction(mgo) == (pytest.approx(-0.687 / 2), ["MP2020 anion correction (oxide)"])
    feo = Structure(Lattice.cubic(4.3), ["Fe", "O"], [[0, 0, 0], [.5, .5, .5]])
    corr, names = P.mp2020_correction(feo)
    assert corr == pytest.approx((-0.687 - 2.256) / 2) and "MP2020 GGA/GGA+U mixing correction (Fe)" in names
    assert P.mp2020_correction(Structure(Lattice.cubic(3.0), ["Ti", "C"], [[0, 0, 0], [.5, .5, .5]])) == (0.0, [])


def test_labelling_cost_counts_the_committed_ledger(script, tmp_path, capsys):
    from dosmatgen.data.store import read_ledger

    S = script("experiments/mp20_labelling_cost/mp20_labelling_cost")
    out = tmp_path / "cost.json"
    ledger = {k: v for k, v in read_ledger(ROOT / "resources" / "builtin").items() if k.startswith("mp20-")}
    target = sum(v["status"] == "done" for v in ledger.values()) + 50  # always some cells still to label
    assert S.main(["--target", str(target), "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["labelled"] == target - 50
    assert d["next_cells"] == min(50, d["remaining"])
    assert sum(v["cells"] for v in d["seconds_by_atoms"].values()) == d["labelled"]
    assert 0 < d["next_core_hours"]["per_atom"] <= d["all_remaining_core_hours_per_atom"]
    # negative control: a build folder without MP-20 labels has nothing to fit
    assert S.main(["--out", str(tmp_path), "--json", str(tmp_path / "none.json")]) == 2
    assert "too few to fit" in capsys.readouterr().err and not (tmp_path / "none.json").exists()
