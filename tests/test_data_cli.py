"""`dosmatgen data ...` end to end on a tiny store built from pymatgen structures with random DOS."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen.cli import main
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.data.store import DOSStore, load_records, save_records

STRUCTURES = {
    "rs-NaCl": Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                         [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                          [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]]),
    "b2-CsCl": Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
    "l12-Au3Ni": Structure(Lattice.cubic(3.9), ["Ni", "Au", "Au", "Au"],
                           [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]),
    "rutile-IrO2": Structure(Lattice.tetragonal(4.50, 3.15), ["Ir", "Ir", "O", "O", "O", "O"],
                             [[0, 0, 0], [.5, .5, .5], [.3, .3, 0], [.7, .7, 0], [.8, .2, .5], [.2, .8, .5]]),
    "fcc-Cu": Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]),
}


@pytest.fixture()
def tiny_store(tmp_path):
    rng = np.random.default_rng(0)
    recs = []
    for k in range(3):  # 15 structures: each prototype three times with its own random DOS
        for name, s in STRUCTURES.items():
            recs.append(CrystalRecord.from_structure(s, f"{name}-{k}", rng.gamma(1.0, 0.5, (len(s), 400)),
                                                     {"source": "test", "engine": "random"}))
    path = tmp_path / "tiny.npz"
    save_records(path, recs, {"name": "tiny"})
    return path


def test_help_works(capsys):
    for argv in (["--help"], ["data", "--help"], ["data", "split", "--help"], ["data", "info", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    assert "--standardiser" in capsys.readouterr().out


def test_split_and_standardiser(tiny_store, tmp_path, capsys):
    out, std = tmp_path / "split.json", tmp_path / "std.json"
    assert main(["data", "split", "--store", str(tiny_store), "--out", str(out), "--seed", "0",
                 "--standardiser", str(std)]) == 0
    split = json.loads(out.read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [9, 3, 3]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(DOSStore(tiny_store).ids)
    assert split["seed"] == 0
    s = DOSStandardiser.load(std)
    store = DOSStore(tiny_store)
    train = np.concatenate([store.site_dos(sid) for sid in split["train"]])
    np.testing.assert_allclose(s.mean, train.mean(axis=0), rtol=1e-5)
    # same seed, same split; another seed, another split
    out2 = tmp_path / "split2.json"
    main(["data", "split", "--store", str(tiny_store), "--out", str(out2)])
    assert json.loads(out2.read_text())["train"] == split["train"]
    main(["data", "split", "--store", str(tiny_store), "--out", str(out2), "--seed", "5"])
    assert json.loads(out2.read_text())["train"] != split["train"]
    assert "train 9, val 3, test 3" in capsys.readouterr().out


def test_info_and_figures(tiny_store, tmp_path, capsys):
    fig, site, js = tmp_path / "hist.png", tmp_path / "ni.png", tmp_path / "summary.json"
    txt = tmp_path / "summary.txt"
    assert main(["data", "info", "--store", str(tiny_store), "--figure", str(fig), "--plot-site",
                 "l12-Au3Ni-1:Ni", "--out", str(site), "--json", str(js), "--text", str(txt)]) == 0
    text = capsys.readouterr().out
    # --text keeps the printed summary (not the figure messages that follow it)
    assert text.startswith(txt.read_text()) and "structures: 15" in txt.read_text()
    assert "dataset figure" not in txt.read_text()
    assert "structures: 15" in text and "elements:   8" in text and "test / random: 15" in text
    assert "1: 3, 2: 3, 4: 3, 6: 3, 8: 3" in text
    summary = json.loads(js.read_text())
    assert summary["element_counts"]["Cl"] == 6 and summary["element_atoms"]["Au"] == 9
    assert summary["n_atoms"] == 3 * 21
    for p in (fig, site):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert "site 0" in text  # Ni is the first site of Au3Ni


def test_json_import_export_round_trip(tiny_store, tmp_path, capsys):
    js, back = tmp_path / "refs.json", tmp_path / "back.npz"
    assert main(["data", "export-json", "--store", str(tiny_store), "--out", str(js)]) == 0
    entries = json.loads(js.read_text())
    assert len(entries) == 15 and set(entries[0]) == {"structure_id", "positions", "cell", "atomic_numbers", "y"}
    assert main(["data", "import-json", "--input", str(js), "--out", str(back)]) == 0
    a, b = load_records(tiny_store), load_records(back)
    assert [r.structure_id for r in a] == [r.structure_id for r in b]
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(rb.frac_coords, ra.frac_coords, atol=1e-10)
        np.testing.assert_allclose(rb.dos, ra.dos, rtol=1e-3, atol=1e-4)
    # one part of a split
    split = tmp_path / "split.json"
    main(["data", "split", "--store", str(tiny_store), "--out", str(split)])
    test_js = tmp_path / "test.json"
    assert main(["data", "export-json", "--store", str(tiny_store), "--out", str(test_js), "--split", str(split),
                 "--part", "test"]) == 0
    assert [e["structure_id"] for e in json.loads(test_js.read_text())] == json.loads(split.read_text())["test"]


def test_target_from_store(tiny_store, tmp_path):
    out = tmp_path / "target.json"
    assert main(["data", "target", "--store", str(tiny_store), "--site", "rutile-IrO2-0:Ir", "--out", str(out)]) == 0
    t = json.loads(out.read_text())
    assert t["element"] == "Ir" and t["site_index"] == 0 and len(t["dos"]) == 400 and len(t["energies"]) == 400
    np.testing.assert_allclose(t["dos"], DOSStore(tiny_store)["rutile-IrO2-0"].dos[0], rtol=1e-6)


def _run_err(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def test_bad_input_exit_2(tiny_store, tmp_path, capsys):
    code, err = _run_err(["data", "info", "--store", str(tmp_path / "missing.npz")], capsys)
    assert code == 2 and "missing.npz does not exist" in err
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"structure_id\": \"a\",")
    code, err = _run_err(["data", "import-json", "--input", str(bad), "--out", str(tmp_path / "x.npz")], capsys)
    assert code == 2 and "not valid JSON" in err and not (tmp_path / "x.npz").exists()
    nokey = tmp_path / "nokey.json"
    nokey.write_text(json.dumps([{"structure_id": "a", "positions": [[0, 0, 0]], "atomic_numbers": [3]}]))
    code, err = _run_err(["data", "import-json", "--input", str(nokey), "--out", str(tmp_path / "x.npz")], capsys)
    assert code == 2 and "cell" in err and "lacks key" in err
    code, err = _run_err(["data", "import-json", "--input", str(tmp_path / "none.json"), "--out", "x.npz"], capsys)
    assert code == 2 and "does not exist" in err
    code, err = _run_err(["data", "info", "--store", str(tiny_store), "--plot-site", "nope:0", "--out",
                          str(tmp_path / "f.png")], capsys)
    assert code == 2 and "'nope' is not in store" in err
    code, err = _run_err(["data", "info", "--store", str(tiny_store), "--plot-site", "fcc-Cu-0:5", "--out",
                          str(tmp_path / "f.png")], capsys)
    assert code == 2 and "site 5 does not exist" in err
    code, err = _run_err(["data", "info", "--store", str(tiny_store), "--plot-site", "fcc-Cu-0:0"], capsys)
    assert code == 2 and "--out" in err
    code, err = _run_err(["data", "split", "--store", str(tiny_store), "--out", str(tmp_path / "s.json"),
                          "--fractions", "0.5", "0.5", "0.5"], capsys)
    assert code == 2 and "summing to 1" in err
    with pytest.raises(SystemExit) as e:  # argparse: malformed ID:SITE
        main(["data", "info", "--store", str(tiny_store), "--plot-site", "no-colon", "--out", "f.png"])
    assert e.value.code == 2


def test_download_mp_without_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    code, err = _run_err(["data", "download-mp", "--out", str(tmp_path / "mp"), "--limit", "2"], capsys)
    assert code == 2 and "MP_API_KEY" in err


def test_merge_mp_shards(tmp_path, tiny_store, capsys):
    shards = tmp_path / "mp"
    recs = load_records(tiny_store)
    shards.mkdir()
    save_records(shards / "shard-00000.npz", recs[:4])
    save_records(shards / "shard-00001.npz", recs[4:6])
    (shards / "ledger.json").write_text(json.dumps({"shards": ["shard-00000.npz", "shard-00001.npz"],
                                                    "done": {}, "failed": {"mp-9": "no DOS"}}))
    out = tmp_path / "merged.npz"
    assert main(["data", "merge", "--source", "mp", "--shards", str(shards), "--out", str(out)]) == 0
    assert DOSStore(out).ids == [r.structure_id for r in recs[:6]]
    code, err = _run_err(["data", "merge", "--source", "mp", "--shards", str(tmp_path / "nothing"),
                          "--out", str(out)], capsys)
    assert code == 2 and "does not exist" in err


def test_build_builtin_delegates(monkeypatch, tmp_path, capsys):
    """The builder's command line (``python -m dev_scripts.builtin build``, formerly ``dosmatgen data
    build-builtin``) runs the builder; ``dosmatgen data merge`` joins its shards (the package's merge)."""
    from dev_scripts.builtin import build as builtin
    from dev_scripts.builtin.cli import main as builtin_main
    from dosmatgen.data import store

    calls = {}

    def add_build_arguments(parser):
        parser.add_argument("--out", default="somewhere")
        parser.add_argument("--n-max", type=int, default=1)

    def run_build(args):
        calls["build"] = (args.out, args.n_max)
        return 0

    def merge_shards(out_dir, store_path, command=None):
        calls["merge"] = (str(out_dir), str(store_path))
        return {"n_records": 7}

    monkeypatch.setattr(builtin, "add_build_arguments", add_build_arguments)
    monkeypatch.setattr(builtin, "run_build", run_build)
    monkeypatch.setattr(store, "merge_shards", merge_shards)
    assert builtin_main(["build", "--out", str(tmp_path / "b"), "--n-max", "3"]) == 0
    assert calls["build"] == (str(tmp_path / "b"), 3)
    (tmp_path / "b").mkdir()
    assert main(["data", "merge", "--shards", str(tmp_path / "b"), "--out", str(tmp_path / "s.npz")]) == 0
    assert calls["merge"] == (str(tmp_path / "b"), str(tmp_path / "s.npz"))
    assert "(7 structures)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        builtin_main(["build", "--help"])
    assert e.value.code == 0 and "--n-max" in capsys.readouterr().out


def test_build_builtin_missing_module(monkeypatch, capsys):
    """The package never needs the builder (dev_scripts): its help and commands work without it;
    ``data build-builtin`` is gone (now ``python -m dev_scripts.builtin build``)."""
    monkeypatch.setitem(sys.modules, "dev_scripts", None)  # import fails
    with pytest.raises(SystemExit) as e:
        main(["--help"])  # the top-level help never needs the builder
    assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        main(["data", "build-builtin"])
    assert e.value.code == 2 and "build-builtin" in capsys.readouterr().err


def test_split_source_fractions_flag(tiny_store, tmp_path, capsys):
    """--source-fractions gives one source its own fractions and is recorded in the split JSON;
    a malformed, repeated or unknown source stops with exit 2 before anything is written."""
    out = tmp_path / "s.json"
    assert main(["data", "split", "--store", str(tiny_store), "--out", str(out),
                 "--source-fractions", "other=0.4,0.2,0.4"]) == 0
    got = json.loads(out.read_text())
    assert [len(got[k]) for k in ("train", "val", "test")] == [6, 3, 6]
    assert got["source_fractions"] == {"other": [0.4, 0.2, 0.4]}
    bad = tmp_path / "bad.json"
    code, err = _run_err(["data", "split", "--store", str(tiny_store), "--out", str(bad),
                          "--source-fractions", "other=0.4,0.2,0.4", "--source-fractions", "other=0.6,0.2,0.2"], capsys)
    assert code == 2 and "names a source twice" in err and not bad.exists()
    code, err = _run_err(["data", "split", "--store", str(tiny_store), "--out", str(bad),
                          "--source-fractions", "mp21=0.6,0.2,0.2"], capsys)
    assert code == 2 and "unknown source 'mp21'" in err and not bad.exists()
    with pytest.raises(SystemExit) as e:  # argparse: not SOURCE=TRAIN,VAL,TEST
        main(["data", "split", "--store", str(tiny_store), "--out", str(bad), "--source-fractions", "mp20"])
    assert e.value.code == 2 and not bad.exists()


def test_split_base_ids_flag(tiny_store, tmp_path, capsys):
    """--base-ids fixes the split on a list of ids: a store grown by later records keeps the
    validation and test parts of the split of the base ids alone and trains on the additions (the
    issue-35 merge of newly labelled real crystals); a list naming an id the store lacks stops
    with exit 2 before anything is written. Negative control: without the list, the grown store's
    split moves its test part."""
    ids = DOSStore(tiny_store).ids
    base_file = tmp_path / "base.txt"
    base_file.write_text("# the first twelve\n" + "\n".join(ids[:12]) + "\n\n")
    small = tmp_path / "small.npz"
    save_records(small, load_records(tiny_store)[:12], {"name": "tiny12"})
    fixed, grown, free = (tmp_path / f"{n}.json" for n in ("fixed", "grown", "free"))
    assert main(["data", "split", "--store", str(small), "--out", str(fixed), "--seed", "1"]) == 0
    assert main(["data", "split", "--store", str(tiny_store), "--out", str(grown), "--seed", "1",
                 "--base-ids", str(base_file)]) == 0
    assert "3 later id(s) went to training only" in capsys.readouterr().out
    a, b = json.loads(fixed.read_text()), json.loads(grown.read_text())
    assert a["val"] == b["val"] and a["test"] == b["test"]
    assert b["train"][:len(a["train"])] == a["train"] and sorted(b["train"][len(a["train"]):]) == sorted(ids[12:])
    assert b["base_ids"] == {"file": str(base_file), "n_base": 12, "added_to_train": {"other": 3}}
    assert main(["data", "split", "--store", str(tiny_store), "--out", str(free), "--seed", "1"]) == 0
    assert json.loads(free.read_text())["test"] != a["test"]
    bad, out = tmp_path / "bad.txt", tmp_path / "never.json"
    bad.write_text("\n".join(ids[:3] + ["no-such-id"]))
    code, err = _run_err(["data", "split", "--store", str(tiny_store), "--out", str(out), "--base-ids", str(bad)], capsys)
    assert code == 2 and "names 1 id(s) the store lacks, e.g. 'no-such-id'" in err and not out.exists()
    code, err = _run_err(["data", "split", "--store", str(tiny_store), "--out", str(out),
                          "--base-ids", str(tmp_path / "absent.txt")], capsys)
    assert code == 2 and not out.exists()
