"""Metrics on hand-made inputs with known answers."""

import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen.data import validity as V
from dosmatgen.evaluate import metrics as M


def nacl(a=5.64):
    """Primitive (2-atom, fcc lattice) rock salt."""
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl(a=4.1):
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rocksalt_conv(a=5.64):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# ---- DOS MAE ---------------------------------------------------------------------------------
def test_dos_mae_reduction_is_per_atom_then_per_structure():
    # structure A: 1 atom, error 1 everywhere -> 1.0
    # structure B: 2 atoms, errors 0 and 2 on half the bins -> atom means 0 and 1 -> 0.5
    pa, ta = np.ones((1, 400)), np.zeros((1, 400))
    pb, tb = np.zeros((2, 400)), np.zeros((2, 400))
    pb[1, :200] = 2.0
    r = M.DOSMAE().compute([pa, pb], [ta, tb])
    assert r.value == pytest.approx((1.0 + 0.5) / 2)  # not the flat atom mean (1+0+1)/3
    assert r.n_used == 2 and r.excluded == {}


def test_dos_mae_excludes_and_counts_failures():
    t = np.zeros((2, 400))
    r = M.DOSMAE().compute([None, np.full((2, 400), 0.25), np.zeros((3, 400)), np.full((2, 400), np.nan)],
                           [t, t, t, t], reasons=["graph_failed", None, None, None])
    assert r.value == pytest.approx(0.25)
    assert r.n_total == 4 and r.n_used == 1
    assert r.excluded == {"graph_failed": 1, "shape_mismatch": 1, "non_finite_dos": 1}
    assert r.to_dict()["n_excluded"] == 3


def test_dos_mae_all_excluded_gives_none():
    assert M.DOSMAE().compute([None], [np.zeros((1, 400))]).value is None


# ---- building / validity ---------------------------------------------------------------------
def test_build_structure_reasons():
    z, x = np.array([11, 17]), np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
    assert V.build_structure(z, x, np.eye(3) * 4)[1] is None
    assert V.build_structure(z, x * np.nan, np.eye(3) * 4)[1] == "non_finite"
    assert V.build_structure(np.array([0, 17]), x, np.eye(3) * 4)[1] == "unknown_element"
    flat = np.array([[4, 0, 0], [0, 4, 0], [4, 4, 0.0]])
    assert V.build_structure(z, x, flat)[1] == "degenerate_lattice"
    assert V.build_structure(np.array([], int), np.zeros((0, 3)), np.eye(3))[1] == "empty"


def test_min_periodic_distance_known_values():
    s = nacl(5.64)
    assert V.min_periodic_distance(s) == pytest.approx(5.64 / 2)
    # one atom: nearest is its own image at the shortest lattice vector, also through a skewed basis
    one = Structure(Lattice([[3, 0, 0], [30, 3, 0], [0, 0, 5]]), ["Cu"], [[0, 0, 0]])
    assert V.min_periodic_distance(one) == pytest.approx(3.0)


def test_validity_counts_each_reason():
    z = np.array([11, 17])
    good = (z, np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.eye(3) * 4)
    overlap = (z, np.array([[0, 0, 0], [0.05, 0, 0]]), np.eye(3) * 4)  # 0.2 Å apart
    tiny = (z, np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.eye(3) * 0.5)  # 0.0625 Å^3/atom
    nan = (z, np.full((2, 3), np.nan), np.eye(3) * 4)
    flat = (z, good[1], np.array([[4, 0, 0], [0, 4, 0], [4, 4, 0.0]]))
    r = M.Validity().compute([good, overlap, tiny, nan, flat])
    assert r.value == pytest.approx(20.0)
    assert r.counts == {"valid": 1, "invalid_overlapping_atoms": 1, "invalid_small_volume": 1,
                        "invalid_non_finite": 1, "invalid_degenerate_lattice": 1}


# ---- matching --------------------------------------------------------------------------------
def test_structure_match_rate_known_pairs():
    gen = [rocksalt_conv(), cscl(), None, nacl(5.7)]
    ref = [nacl(), nacl(), nacl(), nacl()]
    r = M.StructureMatchRate(timeout_s=30).compute(gen, ref)
    # conventional vs primitive rock salt match; CsCl vs NaCl does not; None counts as a miss;
    # 1 % larger lattice still matches (scale=True)
    assert r.counts["matched"] == 2
    assert r.counts["unbuildable_counted_as_miss"] == 1
    assert r.value == pytest.approx(50.0)
    assert r.excluded == {}


def test_structure_match_rate_excludes_timeouts(monkeypatch):
    def slow_fit(self, a, b, **kw):
        time.sleep(2)
        return True

    from pymatgen.analysis.structure_matcher import StructureMatcher

    monkeypatch.setattr(StructureMatcher, "fit", slow_fit)
    t0 = time.time()
    r = M.StructureMatchRate(timeout_s=0.2).compute([nacl(), nacl()], [nacl(), nacl()])
    assert time.time() - t0 < 1.5
    assert r.excluded == {"timeout": 2} and r.n_used == 0 and r.value is None


def test_composition_match_rate():
    gen = [rocksalt_conv(), cscl(), None, Structure(Lattice.cubic(5), ["Na", "Na", "Cl", "Cl"],
                                                     [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])]
    r = M.CompositionMatchRate().compute(gen, [nacl()] * 4)
    assert r.value == pytest.approx(50.0)  # Na2Cl2 reduces to NaCl
    assert r.counts == {"matched": 2, "unbuildable_counted_as_miss": 1}


def test_uniqueness_and_novelty():
    gen = [nacl(), rocksalt_conv(), cscl(), None]
    u = M.Uniqueness().compute(gen)
    assert u.value == pytest.approx(100.0 * 2 / 3)
    assert u.excluded == {"invalid": 1} and u.counts["distinct"] == 2
    n = M.Novelty([nacl(5.5), Structure(Lattice.cubic(4.1), ["Cs", "Br"], [[0, 0, 0], [.5, .5, .5]])]).compute(gen)
    # both rock salts are in training; CsCl is novel (only CsBr in training)
    assert n.value == pytest.approx(100.0 / 3)
    assert n.counts["novel"] == 1


def test_metric_result_roundtrip():
    r = M.MetricResult("x", 1.5, "%", 3, 2, {"timeout": 1}, {"matched": 1})
    assert M.MetricResult.from_dict(r.to_dict()) == r


def test_structure_match_rate_worker_pool_agrees_with_serial():
    gen = [rocksalt_conv(), cscl(), nacl(5.7)]
    ref = [nacl()] * 3
    serial = M.StructureMatchRate(timeout_s=30).compute(gen, ref)
    pooled = M.StructureMatchRate(timeout_s=30, workers=2).compute(gen, ref)
    assert pooled.to_dict() == serial.to_dict()
