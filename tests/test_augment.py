"""Supercell augmentation (dosmatgen.data.augment): a doubled cell is the same crystal with the
same site DOS, and only small enough cells are doubled."""
from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher

from dosmatgen.data.augment import doubled_cell, supercell_axis, with_supercells
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.errors import ConfigError

# a low-symmetry 3-atom cell (triclinic, distinct site DOS) so that nothing passes by symmetry
LATTICE = np.array([[4.1, 0.0, 0.0], [0.7, 4.6, 0.0], [0.3, 0.5, 5.2]])
FRAC = np.array([[0.0, 0.0, 0.0], [0.31, 0.52, 0.18], [0.62, 0.11, 0.57]])
DOS = np.stack([np.full(400, v, dtype=np.float32) for v in (1.0, 2.0, 3.0)])


def _record(sid="mp20-mp-1") -> CrystalRecord:
    return CrystalRecord(sid, [8, 22, 38], FRAC, LATTICE, DOS)


def _distances(rec: CrystalRecord) -> np.ndarray:
    return np.sort(rec.to_structure().distance_matrix[np.triu_indices(rec.num_atoms, 1)])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_doubled_cell_is_the_same_crystal(axis):
    rec = _record()
    big = doubled_cell(rec, axis)
    assert big.num_atoms == 6 and np.isclose(big.to_structure().volume, 2 * rec.to_structure().volume)
    assert StructureMatcher(primitive_cell=True, scale=False).fit(rec.to_structure(), big.to_structure())
    # atom i and its copy N + i: same element, same DOS, one half new cell vector apart
    assert (big.atomic_numbers == np.tile(rec.atomic_numbers, 2)).all()
    assert np.array_equal(big.dos, np.concatenate([DOS, DOS]))
    shift = (big.frac_coords[3:] - big.frac_coords[:3]) % 1.0
    assert np.allclose(shift, np.eye(3)[axis] * 0.5)
    # no pair of the supercell is closer than the closest pair of the crystal (with its images)
    closest = min(n.nn_distance for nbrs in rec.to_structure().get_all_neighbors(8.0) for n in nbrs)
    assert _distances(big)[0] >= closest - 1e-9 and _distances(rec)[0] >= closest - 1e-9
    assert big.structure_id == f"mp20-mp-1~2{'abc'[axis]}" and big.provenance["supercell_of"] == "mp20-mp-1"


def test_a_wrong_copy_is_caught():
    """Negative control: copies a quarter (not half) of the new vector apart are not the crystal."""
    rec = _record()
    big = doubled_cell(rec, 0)
    wrong = CrystalRecord("x", big.atomic_numbers, big.frac_coords - np.r_[[[0, 0, 0]] * 3, [[0.25, 0, 0]] * 3],
                          big.lattice)
    assert not StructureMatcher(primitive_cell=True, scale=False).fit(rec.to_structure(), wrong.to_structure())


def test_with_supercells_doubles_small_cells_only_and_deterministically():
    recs = [CrystalRecord(f"builtin-{k}", [14] * n, np.random.default_rng(k).random((n, 3)), 6 * np.eye(3))
            for k, n in enumerate((2, 3, 6, 7))]
    out = with_supercells(recs, 12, seed=0)
    assert out[:4] == recs and [r.num_atoms for r in out[4:]] == [4, 6, 12]
    assert [r.structure_id.split("~")[0] for r in out[4:]] == ["builtin-0", "builtin-1", "builtin-2"]
    # the axis depends on the id and the seed, not on the order or company of the records
    rev = with_supercells(recs[::-1], 12, seed=0)
    assert sorted(r.structure_id for r in rev[4:]) == sorted(r.structure_id for r in out[4:])
    axes = [supercell_axis(f"builtin-{k}", 0) for k in range(300)]
    assert min(axes.count(a) for a in range(3)) > 70  # all three axes used, about equally
    assert with_supercells(recs, None) == recs and with_supercells(recs, 3) == recs
    for bad in (1, 2.5, True, "12"):
        with pytest.raises(ConfigError, match="integer >= 2"):
            with_supercells(recs, bad)
