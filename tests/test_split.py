"""Train/val/test split: disjoint, exhaustive, seeded and stable, right sizes; standardiser on train."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.split import (SPLIT_NAMES, fit_standardiser_on_train, load_split, make_split, save_split,
                                  split_indices, split_sizes)
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.data.store import DOSStore, save_records
from dosmatgen.errors import DataError

IDS = [f"mp-{k}" for k in range(1, 101)]


def test_disjoint_exhaustive_sizes():
    s = make_split(IDS, seed=3)
    assert [len(s[k]) for k in SPLIT_NAMES] == [60, 20, 20]
    parts = [set(s[k]) for k in SPLIT_NAMES]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set.union(*parts) == set(IDS)


@pytest.mark.parametrize("n, sizes", [(1, [1, 0, 0]), (3, [2, 0, 1]), (7, [4, 2, 1]), (10, [6, 2, 2]),
                                      (11, [7, 2, 2]), (50790, [30474, 10158, 10158])])
def test_sizes(n, sizes):
    assert split_sizes(n) == sizes
    assert sum(split_sizes(n, (0.8, 0.1, 0.1))) == n


def test_paper_test_split_size():
    # the paper's Table 1 reconstructs 10,158 test structures of the 50,790 in MP DOS
    assert split_sizes(50790)[2] == 10158


def test_stable_and_seeded():
    a = make_split(IDS, seed=0)
    assert make_split(list(reversed(IDS)), seed=0) == a  # depends on the set of ids, not their order
    assert make_split(IDS, seed=0) == a
    assert make_split(IDS, seed=1)["train"] != a["train"]
    assert a["train"] != sorted(a["train"])  # actually shuffled


def test_bad_input():
    with pytest.raises(DataError, match="empty"):
        make_split([])
    with pytest.raises(DataError, match="more than once"):
        make_split(["a", "b", "a"])
    with pytest.raises(DataError, match="summing to 1"):
        make_split(IDS, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(DataError, match="three"):
        make_split(IDS, fractions=(0.5, 0.5))


def test_save_load(tmp_path):
    s = make_split(IDS, seed=0)
    p = tmp_path / "split.json"
    save_split(p, s, seed=0)
    raw = json.loads(p.read_text())
    assert raw["seed"] == 0 and raw["train"] == s["train"]
    assert load_split(p) == s
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_split(tmp_path / "bad.json")
    (tmp_path / "part.json").write_text(json.dumps({"train": ["a"], "val": []}))
    with pytest.raises(DataError, match="lacks part"):
        load_split(tmp_path / "part.json")
    (tmp_path / "overlap.json").write_text(json.dumps({"train": ["a"], "val": ["a"], "test": []}))
    with pytest.raises(DataError, match="both"):
        load_split(tmp_path / "overlap.json")


def test_split_indices_and_standardiser_on_train_only(tmp_path):
    rng = np.random.default_rng(0)
    recs = [CrystalRecord(f"x{k}", [8, 12][: 1 + k % 2], rng.random((1 + k % 2, 3)), np.eye(3) * 4,
                          rng.random((1 + k % 2, 400)) * (1 + k)) for k in range(10)]
    save_records(tmp_path / "s.npz", recs)
    store = DOSStore(tmp_path / "s.npz")
    split = make_split(store.ids, seed=0)
    idx = split_indices(store.ids, split)
    assert [store.ids[i] for i in idx["val"]] == split["val"]
    std = fit_standardiser_on_train(store, split)
    train_dos = np.concatenate([store.site_dos(i) for i in idx["train"]])
    expected = DOSStandardiser.fit([train_dos])
    np.testing.assert_allclose(std.mean, expected.mean, rtol=1e-6)
    np.testing.assert_allclose(std.std, expected.std, rtol=1e-6)
    everything = DOSStandardiser.fit([store.all_dos()])
    assert not np.allclose(std.mean, everything.mean)  # val/test atoms did not leak in
    # the list-of-records path agrees with the store path
    from_list = fit_standardiser_on_train(store.records(), split)
    np.testing.assert_allclose(from_list.mean, std.mean, rtol=1e-6)
    with pytest.raises(DataError, match="not in the store"):
        split_indices(store.ids[:5], split)


def test_source_fractions_move_one_source_and_keep_its_test_part():
    """Per-source fractions (the issue-35 lever: more real crystals in training): moving mp20's
    train/val boundary keeps mp20's test part and leaves the prototypes' assignment as it was;
    negative controls: another test fraction changes the test part, bad keys and values fail."""
    ids = [f"builtin-p{i}" for i in range(40)] + [f"mp20-mp-{i}" for i in range(40)]
    base = make_split(ids, seed=3)
    more = make_split(ids, seed=3, source_fractions={"mp20": (0.75, 0.05, 0.2)})
    real = lambda part: [i for i in part if i.startswith("mp20-")]  # noqa: E731
    proto = lambda part: [i for i in part if i.startswith("builtin-")]  # noqa: E731
    assert real(more["test"]) == real(base["test"]) and len(real(more["val"])) == 2
    assert set(real(base["train"])) < set(real(more["train"])) and set(real(more["val"])) < set(real(base["val"]))
    assert all(proto(more[k]) == proto(base[k]) for k in SPLIT_NAMES)
    other = make_split(ids, seed=3, source_fractions={"mp20": (0.6, 0.1, 0.3)})
    assert real(other["test"]) != real(base["test"])
    with pytest.raises(DataError, match="unknown source 'mp21'"):
        make_split(ids, source_fractions={"mp21": (0.75, 0.05, 0.2)})
    with pytest.raises(DataError, match="summing to 1"):
        make_split(ids, source_fractions={"mp20": (0.75, 0.05, 0.1)})
    with pytest.raises(DataError, match="stratified"):
        make_split(ids, stratify=False, source_fractions={"mp20": (0.75, 0.05, 0.2)})


def test_config_schema_names_the_split_sources():
    """data.source_split's allowed keys in the workflow schema are the package's SOURCES (the
    schema cannot import them; this keeps the two lists one)."""
    from dosmatgen.config import load_schema
    from dosmatgen.data.split import SOURCES

    names = load_schema()["properties"]["data"]["properties"]["source_split"]["propertyNames"]["enum"]
    assert tuple(names) == SOURCES


def test_config_schema_split_default_is_the_packages():
    """data.split's default in the workflow schema is data.split.DEFAULT_FRACTIONS (the paper's
    0.6 : 0.2 : 0.2; the schema cannot import it, so this keeps the default written once in effect)."""
    from dosmatgen.config import load_schema
    from dosmatgen.data.split import DEFAULT_FRACTIONS

    assert tuple(load_schema()["properties"]["data"]["properties"]["split"]["default"]) == DEFAULT_FRACTIONS


def test_base_ids_keep_validation_and_test_while_the_store_grows():
    """A split fixed on base ids equals the split of the base ids alone in validation and test, per
    source and for the plain split, and sends every later id to training, interleaved with its
    source; with no later ids it is the ordinary split. Negative control: splitting the grown set
    without the base list moves the real test part; a base id absent from the ids, or a duplicate in
    the list file, is an error."""
    from dosmatgen.data.split import record_source

    base = [f"builtin-p{i}" for i in range(30)] + [f"mp20-mp-{i}" for i in range(40)]
    later = [f"mp20-mp-{i}" for i in range(100, 112)]
    own = {"mp20": (0.75, 0.05, 0.2)}
    a = make_split(base, seed=2, source_fractions=own)
    b = make_split(base + later, seed=2, source_fractions=own, base_ids=base)
    assert b["val"] == a["val"] and b["test"] == a["test"]
    assert set(b["train"]) == set(a["train"]) | set(later)
    assert [i for i in b["train"] if record_source(i) == "prototypes"] == \
        [i for i in a["train"] if record_source(i) == "prototypes"]
    assert make_split(base, seed=2, source_fractions=own, base_ids=base) == a
    plain = make_split(base + later, seed=2, stratify=False, base_ids=base)
    assert plain["test"] == make_split(base, seed=2, stratify=False)["test"] and set(later) <= set(plain["train"])
    grown = make_split(base + later, seed=2, source_fractions=own)
    assert [i for i in grown["test"] if record_source(i) == "mp20"] != [i for i in a["test"] if record_source(i) == "mp20"]
    with pytest.raises(DataError, match="names 1 id"):
        make_split(base[1:], base_ids=base)


def test_load_id_list(tmp_path):
    from dosmatgen.data.split import load_id_list

    p = tmp_path / "ids.txt"
    p.write_text("# header\nmp20-mp-1\n\nbuiltin-a  # a comment\n")
    assert load_id_list(p) == ["mp20-mp-1", "builtin-a"]
    p.write_text("a\nb\na\n")
    with pytest.raises(DataError, match="more than once"):
        load_id_list(p)
    p.write_text("# nothing\n")
    with pytest.raises(DataError, match="names no ids"):
        load_id_list(p)
    with pytest.raises(DataError, match="does not exist"):
        load_id_list(tmp_path / "none.txt")
