"""CrystalBatch: construction from records, masks, validation, collation, conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from torch.utils.data import DataLoader

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import DataError
from dosmatgen.model.batch import CrystalBatch, NoisyBatch, RecordDataset, collate, collate_records
from test_model_crystals import _one_thread, prototype_structures, toy_records  # noqa: F401


def test_from_records_layout_and_defaults():
    recs = toy_records(["NaCl", "SrTiO3", "CaF2"])
    b = CrystalBatch.from_records(recs)
    assert b.num_graphs == 3 and b.num_nodes == 10
    assert b.num_atoms.tolist() == [2, 5, 3]
    assert b.batch.tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2]
    assert b.ptr.tolist() == [0, 2, 7, 10]
    assert b.atom_types[:2].tolist() == [11, 17]
    assert b.lattices.shape == (3, 3, 3) and b.dos.shape == (10, 400)
    assert bool(b.cond_mask.all()) and not bool(b.fixed_mask.any())
    assert b.structure_ids == ["NaCl", "SrTiO3", "CaF2"]
    assert torch.allclose(b.dos[2:7], torch.from_numpy(recs[1].dos))


def test_standardiser_is_applied():
    recs = toy_records(["NaCl", "CsCl"])
    st = DOSStandardiser.fit([r.dos for r in recs])
    b = CrystalBatch.from_records(recs, st)
    assert torch.allclose(b.dos, torch.from_numpy(st.transform(np.concatenate([r.dos for r in recs]))))
    assert abs(float(b.dos.mean())) < 1e-4


def test_masks_by_index_bool_and_default_without_dos():
    recs = toy_records(["NaCl", "SrTiO3"])
    nodos = toy_records(["CsCl"], with_dos=False)[0]
    b = CrystalBatch.from_records(recs + [nodos], cond_mask=[[0], None, None], fixed_mask=[None, [1, 4], []])
    assert b.cond_mask.tolist() == [True, False] + [True] * 5 + [False, False]
    assert b.fixed_mask.tolist() == [False, False, False, True, False, False, True, False, False]
    assert float(b.dos[7:].abs().sum()) == 0.0  # unknown DOS -> zeros
    flat = np.zeros(9, dtype=bool)
    flat[3] = True
    b2 = CrystalBatch.from_records(recs + [nodos], cond_mask=flat)
    assert b2.cond_mask.tolist() == flat.tolist()


@pytest.mark.parametrize("kwargs, message", [
    ({"cond_mask": [[5], None]}, "index 5 out of range"),
    ({"fixed_mask": [None, [-1]]}, "out of range"),
    ({"cond_mask": [[0]]}, "one entry per record"),
    ({"cond_mask": np.ones(3, dtype=bool)}, "3 entries"),
])
def test_mask_errors(kwargs, message):
    with pytest.raises(DataError, match=message):
        CrystalBatch.from_records(toy_records(["NaCl", "SrTiO3"]), **kwargs)


def test_conditioning_an_atom_without_dos_is_an_error():
    rec = toy_records(["CsCl"], with_dos=False)[0]
    with pytest.raises(DataError, match="conditioned but the record has no DOS"):
        CrystalBatch.from_records([rec], cond_mask=[[1]])


def test_bad_dos_is_rejected():
    rec = toy_records(["NaCl"])[0]
    rec.dos = np.zeros((2, 399), dtype=np.float32)  # mutated after validation
    with pytest.raises(DataError, match="DOS has shape"):
        CrystalBatch.from_records([rec])
    rec.dos = np.full((2, 400), np.nan, dtype=np.float32)
    with pytest.raises(DataError, match="NaN"):
        CrystalBatch.from_records([rec])
    with pytest.raises(DataError, match="zero records"):
        CrystalBatch.from_records([])


def test_zero_atom_records_and_inconsistent_batches_are_rejected():
    rec = toy_records(["NaCl"])[0]
    rec.atomic_numbers = np.zeros(0, dtype=np.int64)
    with pytest.raises(DataError, match="zero atoms"):
        CrystalBatch.from_records([rec])
    b = CrystalBatch.from_records(toy_records(["NaCl"]))
    with pytest.raises(DataError, match="shape"):
        CrystalBatch(b.atom_types, b.frac_coords[:1], b.lattices, b.num_atoms, b.batch, b.dos, b.cond_mask,
                     b.fixed_mask)
    bad = CrystalBatch(b.atom_types, b.frac_coords, b.lattices, torch.tensor([3]), b.batch, b.dos,
                       b.cond_mask, b.fixed_mask)
    with pytest.raises(DataError, match="num_atoms sums"):
        bad.validate()


def test_collate_and_dataloader():
    recs = toy_records()
    ds = RecordDataset(recs)
    loader = DataLoader(ds, batch_size=3, shuffle=False, collate_fn=collate_records)
    batches = list(loader)
    assert [b.num_graphs for b in batches] == [3, 3, 2]
    whole = collate(batches)
    ref = CrystalBatch.from_records(recs)
    for name in ("atom_types", "frac_coords", "lattices", "num_atoms", "batch", "dos", "cond_mask"):
        assert torch.equal(getattr(whole, name), getattr(ref, name)), name
    whole.validate()
    sub = ref.graph_slice([6, 1])
    assert sub.structure_ids == ["TiO2", "CsCl"] and sub.num_atoms.tolist() == [6, 2]
    sub.validate()


def test_to_structures_round_trip_and_invalid():
    structs = prototype_structures()
    b = CrystalBatch.from_records(toy_records())
    sm = StructureMatcher()
    for s, ref in zip(b.to_structures(), structs.values()):
        assert sm.fit(s, ref)
    recs = b.to_records()
    assert [r.structure_id for r in recs] == list(structs)
    bad = CrystalBatch(b.atom_types, b.frac_coords, b.lattices.clone(), b.num_atoms, b.batch, b.dos,
                       b.cond_mask, b.fixed_mask)
    bad.lattices[1] = float("nan")
    bad.lattices[2] = 0.0
    out = bad.to_structures(on_invalid="none")
    assert out[1] is None and out[2] is None and out[0] is not None
    with pytest.raises(DataError, match="crystal 1"):
        bad.to_structures()


def test_for_generation_spec():
    dos = np.stack([np.ones(400), np.zeros(400), np.zeros(400)]).astype(np.float32)
    b = CrystalBatch.for_generation([3, 2], dos=[dos, None], cond_mask=[[0], None],
                                    fixed_types=[[0, 26, 0], None])
    assert b.num_atoms.tolist() == [3, 2]
    assert b.cond_mask.tolist() == [True, False, False, False, False]
    assert b.fixed_mask.tolist() == [False, True, False, False, False]
    assert int(b.atom_types[1]) == 26
    with pytest.raises(DataError, match="at least one atom"):
        CrystalBatch.for_generation([0])
    with pytest.raises(DataError, match="fixed_types has 2 entries"):
        CrystalBatch.for_generation([3], fixed_types=[[1, 2]])


def test_noisy_batch_from_clean_and_doubled():
    b = CrystalBatch.from_records(toy_records(["NaCl", "SrTiO3"]), cond_mask=[[0], [1, 2]])
    s = NoisyBatch.from_clean(b)
    assert s.types.shape == (7, 100) and float(s.types[0, 10]) == 1.0 and float(s.types.sum()) == 7.0
    d = s.doubled()
    assert d.num_graphs == 4 and d.batch.tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3]
    assert d.cond_mask.tolist() == s.cond_mask.tolist() + [False] * 7
    assert b.to("cpu").num_graphs == 2


def test_record_requires_finite_coordinates_for_the_batch():
    rec = CrystalRecord("x", [1], [[0, 0, 0]], np.eye(3) * 3)
    rec.frac_coords = np.array([[np.nan, 0, 0]])
    with pytest.raises(DataError, match="NaN"):
        CrystalBatch.from_records([rec])
