"""GPAW site-DOS engine (DESIGN §3.2): protocol helpers, a 2-atom DFT sanity check, the
reference regression (slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.dos.gpaw_engine import (GPAW_ELEMENTS, WORKER_PATH, GPAWEngineError, GPAWSiteDOSEngine, niggli_reduced,
                                       equivalent_atom_classes)
from dosmatgen.dos.grid import ENERGY_GRID

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "gpaw_reference"


def _worker():
    spec = importlib.util.spec_from_file_location("gpaw_worker", WORKER_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@lru_cache(maxsize=1)
def _gpaw():
    return GPAWSiteDOSEngine.available()


def _need_gpaw():
    ok, why = _gpaw()
    if not ok:
        pytest.skip(f"Debian GPAW not usable: {why}")


def _silicon() -> CrystalRecord:
    a = 5.43
    lat = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    return CrystalRecord("Si-diamond", [14, 14], [[0, 0, 0], [0.25, 0.25, 0.25]], lat)


def test_worker_imports_no_project_code():
    imports = [ln.strip() for ln in WORKER_PATH.read_text().splitlines()
               if ln.strip().startswith(("import ", "from "))]
    assert imports and not [ln for ln in imports if "dosmatgen" in ln or "pymatgen" in ln or "torch" in ln]


def test_kpoint_mesh_rule():
    w = _worker()
    assert w.kpt_size(np.diag([3.98, 3.98, 3.98]), 12) == [4, 4, 4]
    assert w.kpt_size(np.diag([4.505, 4.505, 3.159]), 30) == [7, 7, 10]
    assert w.kpt_size(np.diag([40.0, 5.0, 5.0]), 12) == [1, 3, 3]


def test_gaussian_broadening_conserves_weight():
    w = _worker()
    grid = np.linspace(-10, 10, 4001)
    eps = np.array([-2.0, 0.5, 3.0])
    weights = np.array([[1.0, 0.0, 0.25], [0.0, 2.0, 0.0]])
    dos = w.gaussian_dos(grid, eps, weights, 0.15)
    assert np.allclose(np.trapezoid(dos, grid, axis=1), [1.25, 2.0], atol=1e-6)
    assert abs(grid[np.argmax(dos[1])] - 0.5) < 0.01


def test_equivalent_atoms_use_full_space_group():
    # diamond Si: the two atoms are related only by operations with a fractional translation
    assert equivalent_atom_classes(_silicon()) == [[0, 1]]
    rutile = CrystalRecord("IrO2", [77, 77, 8, 8, 8, 8],
                           [[0, 0, 0], [.5, .5, .5], [.3077, .3077, 0], [.6923, .6923, 0],
                            [.8077, .1923, .5], [.1923, .8077, .5]], np.diag([4.505, 4.505, 3.159]))
    assert sorted(map(sorted, equivalent_atom_classes(rutile))) == [[0, 1], [2, 3, 4, 5]]


def test_check_rejects_missing_setup_and_overlap():
    eng = GPAWSiteDOSEngine()
    assert len(GPAW_ELEMENTS) == 68 and "La" not in GPAW_ELEMENTS and "Tc" not in GPAW_ELEMENTS
    setups = Path("/usr/share/gpaw-setups")
    if setups.is_dir():  # the table matches what Debian's gpaw-data ships (PBE setup + dzp basis)
        have = {p.name.split(".")[0] for p in setups.glob("*.dzp.basis.gz")}
        have &= {p.name.split(".")[0] for p in setups.glob("*.PBE.gz")}
        assert have == set(GPAW_ELEMENTS)
    la = CrystalRecord("LaN", [57, 7], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 3)
    with pytest.raises(GPAWEngineError, match="no GPAW setup.*La"):
        eng.compute(la)
    clash = CrystalRecord("clash", [14, 14], [[0, 0, 0], [0.01, 0, 0]], np.eye(3) * 5)
    with pytest.raises(GPAWEngineError, match="overlap"):
        eng.compute(clash)


def test_job_protocol_settings():
    eng = GPAWSiteDOSEngine(timeout_s=10)
    job = eng.job(_silicon())
    assert job["basis"] == "dzp" and job["h"] == 0.3 and job["xc"] == "PBE" and job["width"] == 0.1
    assert job["kdens_scf"] == 12 and job["kdens_dos"] == 30 and job["sigma"] == 0.15
    assert job["spinpol"] is False and np.allclose(job["energy_grid"], ENERGY_GRID)
    ni = CrystalRecord("Ni", [28], [[0, 0, 0]], np.eye(3) * 2.5)
    assert eng.job(ni)["spinpol"] is True


def _fake_worker_result(n_atoms: int) -> dict:
    return {"status": np.array("ok"), "dos": np.ones((n_atoms, len(ENERGY_GRID))), "fermi": np.array(1.0),
            "vbm": np.array(1.0), "cbm": np.array(1.0), "gap": np.array(0.0), "reference_energy": np.array(1.0),
            "spinpol": np.array(False), "magmom": np.array(0.0), "weight_max_dev": np.array(1e-9),
            "seconds": np.array(0.1)}


@pytest.mark.parametrize("fallback, error, expect", [
    ("szp(dzp)", "LinAlgError: The leading minor of order 109 of B is not positive definite.", "szp(dzp)"),
    (None, "LinAlgError: The leading minor of order 109 of B is not positive definite.", "raises"),
    ("szp(dzp)", "SCF did not converge in 100 iterations", "raises"),
])
def test_fallback_basis_only_for_an_overcomplete_basis(monkeypatch, fallback, error, expect):
    eng = GPAWSiteDOSEngine(fallback_basis=fallback)
    seen = []

    def run_worker(record, basis):
        seen.append(basis)
        if basis == "dzp":
            raise GPAWEngineError(f"{record.structure_id}: {error}")
        assert eng.job(record, basis)["basis"] == basis
        return _fake_worker_result(record.num_atoms)

    monkeypatch.setattr(eng, "_run_worker", run_worker)
    if expect == "raises":
        with pytest.raises(GPAWEngineError, match=error.split(":")[0]):
            eng.compute(_silicon())
        assert seen == ["dzp"]
    else:
        res = eng.compute(_silicon())
        assert seen == ["dzp", expect] and res.protocol["basis"] == expect
        assert eng.protocol()["basis"] == "dzp"  # the engine's own protocol is unchanged


def test_worker_finds_the_file_of_a_reduced_basis(tmp_path, monkeypatch):
    import sys
    import types

    for name in ("Cs.PBE.gz", "Cs.dzp.basis.gz"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "gpaw", types.SimpleNamespace(setup_paths=[str(tmp_path)]))
    w = _worker()
    w.check_setups(["Cs"], "dzp", "PBE")
    w.check_setups(["Cs"], "szp(dzp)", "PBE")  # GPAW reads szp(dzp) from the dzp file
    with pytest.raises(w.WorkerError, match="szp basis"):
        w.check_setups(["Cs"], "szp", "PBE")


@pytest.mark.slow
@pytest.mark.gpaw
def test_overcomplete_cs_basis_falls_back_to_szp():
    """Antifluorite Cs2Se at the geometry the dataset build failed on (~80 s): dzp's overlap
    matrix is not positive definite; szp(dzp) labels it."""
    _need_gpaw()
    lat = [[0.0, 4.2473, 4.2473], [4.2473, 0.0, 4.2473], [4.2473, 4.2473, 0.0]]
    rec = CrystalRecord("Cs2Se", [34, 55, 55], [[0, 0, 0], [.25, .25, .25], [.75, .75, .75]], lat)
    with pytest.raises(GPAWEngineError, match="not positive definite"):
        GPAWSiteDOSEngine(timeout_s=900).compute(rec)
    res = GPAWSiteDOSEngine(timeout_s=900, fallback_basis="szp(dzp)").compute(rec)
    assert res.protocol["basis"] == "szp(dzp)" and res.weight_max_dev < 1e-6 and res.gap > 0.5


def _rb2inbicl6() -> CrystalRecord:
    """MP-20's Rb2InBiCl6 (mp-1114523, Fm-3m double perovskite) in its Niggli cell: GPAW 22.8's
    symmetry reduction gives its 2x2x2 and 4x4x4 Γ-centred meshes an irreducible k-point of
    weight 0 (the label build failed on it with an OverflowError in the occupations).  Its
    lattice is fcc to 1e-8 Å, not exactly: GPAW's symmetry search finds an inconsistent set."""
    # the pool's numbers as they are: a change of 1e-9 Å in them gives a healthy reduction
    lat = [[6.98712663, 0.0, 4.03401944], [2.32904221, 6.58752616, 4.03401944], [0.0, 0.0, 8.06803888]]
    u, v = 0.760942, 0.239058
    frac = [[.75, .75, .75], [.25, .25, .25], [.5, .5, .5], [0, 0, 0],
            [u, v, v], [v, v, u], [v, u, u], [v, u, v], [u, v, u], [u, u, v]]
    return CrystalRecord("Rb2InBiCl6", [37, 37, 49, 83] + [17] * 6, frac, lat)


def _zero_weight_ibz(record: CrystalRecord, kpts: list[int]) -> bool:
    """The worker's zero-weight check, run with Debian's GPAW in its own process."""
    eng = GPAWSiteDOSEngine()
    code = ("import json, sys; from ase import Atoms; sys.path.insert(0, sys.argv[1]); import gpaw_worker as w; "
            "job = json.loads(sys.argv[2]); kpts = json.loads(sys.argv[3]); "
            "a = Atoms(numbers=job['numbers'], cell=job['cell'], scaled_positions=job['scaled_positions'], pbc=True); "
            "print(w.ibz_has_zero_weight(job, a, False, kpts))")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(PYTHONPATH="", OMP_NUM_THREADS="1")
    proc = subprocess.run([eng.python, "-c", code, str(WORKER_PATH.parent), json.dumps(eng.job(record)),
                           json.dumps(kpts)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.gpaw
def test_zero_weight_irreducible_kpoint_is_detected():
    """The cell GPAW reduces badly is found on both meshes; silicon (negative control) is not."""
    _need_gpaw()
    assert _zero_weight_ibz(_rb2inbicl6(), [2, 2, 2])
    assert _zero_weight_ibz(_rb2inbicl6(), [4, 4, 4])
    assert not _zero_weight_ibz(_silicon(), [4, 4, 4])


@pytest.mark.slow
@pytest.mark.gpaw
def test_zero_weight_kpoint_cell_is_labelled_without_point_group_symmetry():
    """Rb2InBiCl6 (~60 s): labelled with time-reversal symmetry only, recorded as such; a
    semiconductor (gap 1.25 eV in the build's label, MP's PBE 1.70 eV) whose equivalent Cl
    sites get one DOS."""
    _need_gpaw()
    res = GPAWSiteDOSEngine(timeout_s=900).compute(_rb2inbicl6())
    assert res.extra["point_group_symmetry"] is False
    assert res.extra["attempts"][0].startswith("zero-weight IBZ k-point")
    assert res.weight_max_dev < 1e-6 and res.gap == pytest.approx(1.25, abs=0.05)
    assert np.allclose(res.dos[4:], res.dos[4], atol=1e-6)


def _limited(timeout_s: float, code: str):
    eng = GPAWSiteDOSEngine(timeout_s=timeout_s)
    return eng._run_limited([sys.executable, "-c", code], dict(os.environ), ".", "probe")


def test_cpu_time_limit_stops_a_busy_worker():
    t0 = time.monotonic()
    with pytest.raises(GPAWEngineError, match="timed out: used its CPU-time limit of 1 s"):
        _limited(1, "while True: pass")
    assert time.monotonic() - t0 < 8


def test_idle_wall_clock_does_not_count_against_the_cpu_limit():
    """A worker that waits (as one starved by other work does) longer than its CPU budget is not
    failed; negative control for the test above."""
    assert _limited(0.5, "import time; time.sleep(1.5); print('done')").stdout.strip() == "done"


def test_hung_worker_stops_at_the_wall_clock_limit(monkeypatch):
    import dosmatgen.dos.gpaw_engine as engine
    monkeypatch.setattr(engine, "WALL_CLOCK_FACTOR", 2.0)
    with pytest.raises(GPAWEngineError, match="timed out after 1 s of wall clock"):
        _limited(0.5, "import time; time.sleep(30)")


def test_timeout_is_reported(tmp_path):
    _need_gpaw()
    eng = GPAWSiteDOSEngine(timeout_s=1)
    with pytest.raises(GPAWEngineError, match="timed out"):
        eng.compute(_silicon())


@pytest.mark.gpaw
def test_silicon_weights_and_electron_count():
    """2-atom Si: Mulliken weights sum to 1 and the DOS integrated to E_F holds 8 electrons."""
    _need_gpaw()
    eng = GPAWSiteDOSEngine(timeout_s=300, wide_grid=(-30.0, 10.0, 4001))
    res = eng.compute(_silicon())
    assert res.weight_max_dev < 1e-6
    assert res.dos.shape == (2, 400) and np.all(res.dos >= -1e-9)
    assert np.allclose(res.dos[0], res.dos[1], atol=1e-6)  # symmetry-equivalent sites
    assert 0.3 < res.gap < 1.2 and not res.spin_polarised
    grid, wide = res.extra["wide_grid"], res.extra["wide_dos"].sum(axis=0)
    below = grid <= res.extra["fermi_minus_ref"]
    n_el = np.trapezoid(wide[below], grid[below])
    assert abs(n_el - 8.0) / 8.0 < 0.02, n_el
    assert res.extra["n_electrons"] == pytest.approx(8.0)
    # zero at the valence-band maximum: the DOS just below 0 is large, inside the gap it is ~0
    assert res.dos[0][np.argmin(abs(ENERGY_GRID + 1.0))] > 0.05
    assert res.dos[0][np.argmin(abs(ENERGY_GRID - 0.25))] < 0.05


@pytest.mark.slow
@pytest.mark.gpaw
def test_reference_regression():
    """Same geometry and protocol as tests/fixtures/gpaw_reference: cosine >= 0.97 per site."""
    _need_gpaw()
    from pymatgen.core import Lattice, Structure

    targets = json.loads((REFERENCE / "targets.json").read_text())["structures"]
    ref = np.load(REFERENCE / "gpaw_targets.npz")
    eng = GPAWSiteDOSEngine(timeout_s=1200)
    for s in targets:
        st = Structure(Lattice.from_parameters(*s["abc"], *s["angles"]), s["species"], s["frac"])
        res = eng.compute(CrystalRecord.from_structure(st, s["id"]))
        want = ref[s["id"].replace("-", "_")]
        cos = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(res.dos, want)]
        assert min(cos) >= 0.97, (s["id"], cos)


@pytest.mark.gpaw
def test_scf_that_does_not_converge_is_a_clear_recorded_failure(monkeypatch):
    """Two SCF iterations cannot converge Si: the engine says so after trying both mixers, and the
    built-in builder records the structure as failed (stage dft) instead of stopping."""
    _need_gpaw()
    from dev_scripts.builtin import build as builtin

    eng = GPAWSiteDOSEngine(timeout_s=300, maxiter=2, attempts=2)
    with pytest.raises(GPAWEngineError, match="did not converge in 2 iterations with 2 mixer"):
        eng.compute(_silicon())
    monkeypatch.setitem(builtin._STATE, "engine", eng)
    monkeypatch.setitem(builtin._STATE, "calc", None)
    cand = next(c for c in builtin.candidates(0, 400) if builtin.PROTOTYPES[c.prototype].num_atoms == 2 and not c.magnetic)
    out = builtin._work((cand, 0.05, 10))
    assert out["status"] == "failed" and out["stage"] == "dft" and "did not converge" in out["reason"]


def _skewed_silicon() -> CrystalRecord:
    """Diamond Si in a deliberately skewed cell, a1, a2 + 7 a1, a3 - 7 a2 + 3 a1 (the same crystal),
    one GPAW refuses as it is (its grid and stencils cannot be built)."""
    si = _silicon()
    a1, a2, a3 = si.lattice
    skewed = np.array([a1, a2 + 7 * a1, a3 - 7 * a2 + 3 * a1])
    frac = np.mod(np.linalg.solve(skewed.T, (si.frac_coords @ si.lattice).T).T, 1.0)
    return CrystalRecord("Si-skewed", [14, 14], frac, skewed)


def test_niggli_reduction_keeps_atoms_and_their_order():
    skewed = _skewed_silicon()
    reduced = niggli_reduced(skewed)
    assert max(np.linalg.norm(skewed.lattice, axis=1)) > 10  # really skewed
    assert np.allclose(sorted(np.linalg.norm(reduced.lattice, axis=1)), [3.8396] * 3, atol=1e-3)
    assert abs(np.linalg.det(reduced.lattice)) == pytest.approx(abs(np.linalg.det(skewed.lattice)))
    assert list(reduced.atomic_numbers) == [14, 14]
    # the same Si-Si nearest-neighbour distance (a sqrt(3)/4) and the same pair of atoms
    assert reduced.min_distance() == pytest.approx(5.43 * np.sqrt(3) / 4, abs=1e-6)
    assert niggli_reduced(_silicon()) is _silicon() or niggli_reduced(reduced) is reduced  # reduced stays as is


@pytest.mark.gpaw
def test_skewed_cell_gives_the_reduced_cells_dos():
    """A generated crystal's skewed cell: GPAW alone refuses it (negative control); the engine
    reduces it and returns the DOS of the same crystal in its reduced cell, per atom."""
    _need_gpaw()
    import subprocess
    import sys
    import tempfile

    eng = GPAWSiteDOSEngine(timeout_s=300)
    skewed = _skewed_silicon()
    job = dict(eng.job(skewed), cell=skewed.lattice.tolist(), scaled_positions=skewed.frac_coords.tolist())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        subprocess.run([eng.python, str(WORKER_PATH), str(Path(tmp) / "job.json"), str(Path(tmp) / "out.npz")],
                       capture_output=True, text=True, timeout=300, cwd=tmp, check=False,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
        with np.load(Path(tmp) / "out.npz", allow_pickle=False) as raw:
            # GPAW refuses it ("weird unit cell", or no interpolator for its squeezed grid)
            assert str(raw["status"]) != "ok" and ("weird" in str(raw["error"]) or "Grid" in str(raw["error"]))
    a = eng.compute(skewed).dos
    b = eng.compute(niggli_reduced(skewed)).dos
    cos = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.all(cos > 0.999) and np.abs(a - b).max() < 1e-3, (cos, np.abs(a - b).max())


def test_interrupted_run_leaves_no_worker_and_no_temp_folder(tmp_path):
    """A stopped build (SIGTERM -> SystemExit in a pool worker, or Ctrl-C) kills the GPAW process it
    waits on and removes the job's temporary folder; negative control: the fake worker does start."""
    import signal

    fake = tmp_path / "fake_python"
    fake.write_text("#!/bin/sh\necho $$ > \"$(dirname \"$2\")/../../pid\"\nexec sleep 60\n")
    fake.chmod(0o755)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    eng = GPAWSiteDOSEngine(timeout_s=100, python=str(fake), keep_dir=str(jobs))

    def stop(signum, frame):  # noqa: ARG001
        raise SystemExit(143)

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(SystemExit):
            eng._run_worker(_silicon(), "dzp")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert list(jobs.iterdir()) == []
