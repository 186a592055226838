"""Dataset store (.npz) and the reference-code JSON format."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from dosmatgen.data import store as store_mod
from dosmatgen.data.reference_json import read_reference_json, records_from_reference_list, write_reference_json
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.store import DOSStore, concat_stores, load_meta, load_records, save_records
from dosmatgen.errors import DataError


def _records(n: int = 4, seed: int = 0) -> list[CrystalRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        natoms = 1 + k % 3
        dos = None if k == 1 else rng.gamma(1.0, 0.8, size=(natoms, 400))
        out.append(CrystalRecord(f"s{k}", rng.integers(1, 90, natoms), rng.random((natoms, 3)),
                                 np.diag(rng.uniform(3, 6, 3)) + rng.normal(0, 0.1, (3, 3)), dos,
                                 {"source": "test", "k": k}))
    return out


def test_round_trip_exact(tmp_path):
    recs = _records()
    path = tmp_path / "s.npz"
    save_records(path, recs, {"name": "tiny", "n": 4})
    back = load_records(path)
    assert [r.structure_id for r in back] == [r.structure_id for r in recs]
    for a, b in zip(recs, back):
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)  # float64, exact
        np.testing.assert_array_equal(a.lattice, b.lattice)
        assert a.provenance == b.provenance
        if a.dos is None:
            assert b.dos is None
        else:
            assert b.dos.dtype == np.float32
            np.testing.assert_allclose(b.dos, a.dos, rtol=1e-3, atol=1e-4)  # float16 storage
    assert load_meta(path) == {"name": "tiny", "n": 4}


def test_random_access_reader(tmp_path):
    recs = _records(5)
    path = tmp_path / "s.npz"
    save_records(path, recs)
    s = DOSStore(path)
    assert len(s) == 5 and s.ids == [r.structure_id for r in recs]
    assert s.index("s3") == 3 and "s3" in s and "nope" not in s
    assert s["s2"].structure_id == "s2" and s[-1].structure_id == "s4"
    assert [r.structure_id for r in s[1:3]] == ["s1", "s2"]
    np.testing.assert_array_equal(s.num_atoms, [r.num_atoms for r in recs])
    assert s.site_dos(1) is None and s[1].dos is None
    np.testing.assert_allclose(s.site_dos("s4"), recs[4].dos, rtol=1e-3, atol=1e-4)
    # all_dos skips unlabelled structures and stacks atoms in order
    block = s.all_dos([0, 1, 2])
    np.testing.assert_allclose(block, np.concatenate([recs[0].dos, recs[2].dos]), rtol=1e-3, atol=1e-4)
    assert s.provenance(3) == {"source": "test", "k": 3}
    assert [r.structure_id for r in s] == s.ids
    with pytest.raises(DataError, match="nope"):
        s["nope"]
    with pytest.raises(IndexError):
        s[5]


@pytest.mark.parametrize("bad, match", [
    ([], "empty"),
    (["not a record"], "not a CrystalRecord"),
])
def test_rejects_bad_lists(tmp_path, bad, match):
    with pytest.raises(DataError, match=match):
        save_records(tmp_path / "s.npz", bad)
    assert not (tmp_path / "s.npz").exists()


def test_rejects_duplicates_mutated_and_overflow(tmp_path):
    recs = _records(3)
    with pytest.raises(DataError, match="more than once"):
        save_records(tmp_path / "a.npz", recs + [recs[0]])
    mutated = _records(2)
    mutated[0].dos = np.ones((7, 400))  # wrong number of rows after construction
    with pytest.raises(DataError, match="DOS has shape"):
        save_records(tmp_path / "b.npz", mutated)
    huge = _records(1)
    huge[0].dos = np.full_like(huge[0].dos, 1e6)
    with pytest.raises(DataError, match="float16"):
        save_records(tmp_path / "c.npz", huge)
    assert sorted(os.listdir(tmp_path)) == []


def test_rejects_bad_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="does not exist"):
        load_meta(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="not a dosmatgen store"):
        DOSStore(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(DataError, match="missing array"):
        DOSStore(tmp_path / "other.npz")
    with pytest.raises(DataError, match="directory"):
        DOSStore(tmp_path)


def _failing_savez(f, **arrays):
    f.write(b"PK\x03\x04 half a zip")  # some bytes reach the disk, then the writer dies
    raise KeyboardInterrupt


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    monkeypatch.setattr(store_mod.np, "savez_compressed", _failing_savez)
    with pytest.raises(KeyboardInterrupt):
        save_records(path, _records(2))
    assert os.listdir(tmp_path) == []  # neither the store nor a temp file


def test_interrupted_overwrite_keeps_old_store(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    save_records(path, _records(2), {"v": 1})
    before = path.read_bytes()
    monkeypatch.setattr(store_mod.np, "savez_compressed", _failing_savez)
    with pytest.raises(KeyboardInterrupt):
        save_records(path, _records(3, seed=1), {"v": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.npz"]
    monkeypatch.undo()
    assert load_meta(path) == {"v": 1} and len(load_records(path)) == 2


def test_concat_stores(tmp_path):
    recs = _records(5)
    save_records(tmp_path / "a.npz", recs[:3])
    save_records(tmp_path / "b.npz", recs[3:])
    assert concat_stores([tmp_path / "a.npz", tmp_path / "b.npz"], tmp_path / "all.npz", {"m": 1}) == 5
    assert DOSStore(tmp_path / "all.npz").ids == [r.structure_id for r in recs]
    save_records(tmp_path / "c.npz", recs[2:4])
    with pytest.raises(DataError, match="more than one shard"):
        concat_stores([tmp_path / "a.npz", tmp_path / "c.npz"], tmp_path / "dup.npz")
    assert not (tmp_path / "dup.npz").exists()
    assert concat_stores([tmp_path / "a.npz", tmp_path / "c.npz"], tmp_path / "kf.npz",
                         on_duplicate="keep-first") == 4


# ---- reference JSON ------------------------------------------------------------------------------
def test_reference_json_round_trip(tmp_path):
    recs = _records(3)
    path = tmp_path / "refs.json"
    assert write_reference_json(path, recs) == 3
    raw = json.loads(path.read_text())
    assert set(raw[0]) == {"structure_id", "positions", "cell", "atomic_numbers", "y"}
    np.testing.assert_allclose(raw[0]["positions"], recs[0].frac_coords @ recs[0].lattice)  # Cartesian Å
    assert raw[1]["y"] is None
    back = read_reference_json(path)
    for a, b in zip(recs, back):
        assert a.structure_id == b.structure_id
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
        np.testing.assert_allclose(b.frac_coords, a.frac_coords, atol=1e-12)
        np.testing.assert_allclose(b.lattice, a.lattice)
        if a.dos is None:
            assert b.dos is None
        else:
            np.testing.assert_allclose(b.dos, a.dos, rtol=1e-6)


def test_reference_json_malformed(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_reference_json(tmp_path / "missing.json")
    p = tmp_path / "bad.json"
    p.write_text('[{"structure_id": "a", "positions": [[0, 0, 0]],,]')
    with pytest.raises(DataError, match=r"not valid JSON \(line 1"):
        read_reference_json(p)
    good = _records(1)[0].to_reference_json()
    cases = [
        ({"a": 1}, "expected a JSON list"),
        ([], "empty"),
        ([1], "entry 0 is a int"),
        ([{k: v for k, v in good.items() if k != "cell"}], r"entry 0 \(s0\).*lacks key.*cell"),
        ([{**good, "positions": [[0, 0], [1, 2, 3]]}], r"entry 0 \(s0\): malformed numbers"),
        ([{**good, "y": [[0.0] * 10]}], r"DOS has shape"),
        ([{**good, "atomic_numbers": [0]}], "unknown element"),
        ([good, good], "more than once"),
    ]
    for entries, match in cases:
        with pytest.raises(DataError, match=match):
            records_from_reference_list(entries)
