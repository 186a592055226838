"""``dosmatgen train`` / ``sample`` / ``bench`` end to end on tiny models, and every bad input
of ``sample`` -> exit 2 with a clear message and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dosmatgen.checkpoint import read_checkpoint, save_checkpoint
from dosmatgen.cli import main
from dosmatgen.commands.sample import parse_fixed_types, read_target_dos
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.model.factory import build_model
from factories import TINY_DIFFUSION, write_workspace

TINY = TINY_DIFFUSION


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A store, a split, a tiny untrained diffusion checkpoint and regressor checkpoint."""
    d = tmp_path_factory.mktemp("cli")
    recs, std = write_workspace(d, prefix="c")
    save_checkpoint(d / "reg.pt", build_model("regressor", TINY), "regressor", std)
    rng = np.random.default_rng(1)
    np.save(d / "t2.npy", rng.random((2, 400)))
    (d / "cfg.yaml").write_text(json.dumps({"model": TINY, "train": {"epochs": 1, "batch_size": 4}}))
    return d, recs


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out + cap.err


# ---- train ------------------------------------------------------------------------------------------
def test_train_cli_runs_and_resumes(ws, tmp_path, capsys):
    d, _ = ws
    base = ["train", "--kind", "diffusion", "--store", d / "s.npz", "--split", d / "split.json",
            "--standardiser", d / "std.json", "--config", d / "cfg.yaml", "--out", tmp_path / "run",
            "--device", "cpu", "--seed", 1, "--no-progress"]
    code, out = run(capsys, *base)
    assert code == 0, out
    assert "trained diffusion: 2 optimiser steps, 1 full epochs" in out
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["extra"]["train_config"]["batch_size"] == 4 and ck["extra"]["train_config"]["seed"] == 1
    assert ck["config"]["model"]["hidden_dim"] == 16
    # more epochs on the command line: continues the same run
    code, out = run(capsys, *base, "--epochs", 2, "--resume")
    assert code == 0, out
    assert "resuming" in out and read_checkpoint(tmp_path / "run" / "last.pt")["extra"]["epoch"] == 2
    # a changed option refuses to resume, naming it
    code, out = run(capsys, *base, "--epochs", 3, "--lr", 0.01)
    assert code == 2 and "lr: 0.001 -> 0.01" in out
    code, out = run(capsys, *base, "--resume", "--out", tmp_path / "nothing")
    assert code == 2 and "does not exist" in out


def test_train_cli_sizes_and_fitted_standardiser(ws, tmp_path, capsys):
    d, _ = ws
    code, out = run(capsys, "train", "--kind", "regressor", "--store", d / "s.npz", "--split", d / "split.json",
                    "--size", "tiny", "--max-steps", 1, "--batch-size", 4, "--out", tmp_path / "r",
                    "--device", "cpu", "--no-progress")
    assert code == 0, out
    ck = read_checkpoint(tmp_path / "r" / "last.pt")
    assert ck["kind"] == "regressor" and ck["config"]["model"]["hidden_dim"] == 32  # ModelConfig.tiny()
    assert (tmp_path / "r" / "standardiser.json").exists()


def test_train_cli_errors(ws, tmp_path, capsys):
    d, _ = ws
    (tmp_path / "bad_split.json").write_text(json.dumps({"train": ["c0", "nope"], "val": [], "test": []}))
    code, out = run(capsys, "train", "--kind", "diffusion", "--store", d / "s.npz", "--split",
                    tmp_path / "bad_split.json", "--out", tmp_path / "o")
    assert code == 2 and "'nope'" in out
    (tmp_path / "bad.yaml").write_text("train: {epoch: 3}\n")
    code, out = run(capsys, "train", "--kind", "diffusion", "--store", d / "s.npz", "--split", d / "split.json",
                    "--config", tmp_path / "bad.yaml", "--out", tmp_path / "o")
    assert code == 2 and "unknown training config key" in out and "epoch" in out
    assert not (tmp_path / "o").exists()


# ---- sample ------------------------------------------------------------------------------------------
def sample_args(d, out, *extra):
    return ["sample", "--checkpoint", d / "diff.pt", "--n", 3, "--out", out, "--device", "cpu",
            "--no-progress", *extra]


def test_sample_prior_with_masks_and_fixed_types(ws, tmp_path, capsys):
    from ase.io import read

    d, _ = ws
    out = tmp_path / "gen"
    code, text = run(capsys, *sample_args(d, out, "--num-atoms", 4, "--target-dos", d / "t2.npy",
                                          "--condition-atoms", "0,2", "--fixed-types", "1=Ni,3=8"))
    assert code == 0, text
    assert sorted(p.name for p in out.glob("*.cif")) == ["sample-0000.cif", "sample-0001.cif", "sample-0002.cif"]
    frames = read(out / "structures.extxyz", index=":")
    assert len(frames) == 3
    for atoms in frames:
        assert len(atoms) == 4 and atoms.numbers[1] == 28 and atoms.numbers[3] == 8
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("name,num_atoms,valid") and len(rows) == 4
    meta = json.loads((out / "sample.json").read_text())
    assert meta["condition_atoms"] == [0, 2] and meta["fixed_types"] == {"1": 28, "3": 8}
    # same seed, same crystals; the folder of an earlier sample run is replaced
    first = (out / "structures.extxyz").read_text()
    code, text = run(capsys, *sample_args(d, out, "--num-atoms", 4, "--target-dos", d / "t2.npy",
                                          "--condition-atoms", "0,2", "--fixed-types", "1=Ni,3=8",
                                          "--format", "extxyz"))
    assert code == 0, text
    assert (out / "structures.extxyz").read_text() == first
    assert not list(out.glob("*.cif"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sample_template_from_store_and_classifier_guidance(ws, tmp_path, capsys):
    d, recs = ws
    rec = next(r for r in recs if r.num_atoms >= 2)
    out = tmp_path / "gen"
    code, text = run(capsys, *sample_args(d, out, "--store", d / "s.npz", "--target", f"{rec.structure_id}",
                                          "--template", rec.structure_id, "--t0", 5, "--steps", 20,
                                          "--regressor", d / "reg.pt", "--guidance-scale", 0.5,
                                          "--format", "cif"))
    assert code == 0, text
    meta = json.loads((out / "sample.json").read_text())
    assert meta["t0"] == 5 and meta["steps"] == 5 and "ClassifierGuidance" in meta["guidance"]
    assert meta["condition_atoms"] == list(range(rec.num_atoms))
    assert len(list(out.glob("*.cif"))) + (out / "summary.csv").read_text().count(",False,") == 3


def test_sample_template_file_and_single_row(ws, tmp_path, capsys):
    d, recs = ws
    rec = recs[0]
    rec.to_structure().to(filename=str(tmp_path / "tpl.cif"))
    (tmp_path / "t.json").write_text(json.dumps({"dos": np.ones(400).tolist()}))
    code, text = run(capsys, *sample_args(d, tmp_path / "g", "--template", tmp_path / "tpl.cif", "--t0", 3,
                                          "--target-dos", tmp_path / "t.json", "--condition-atoms", "0"))
    assert code == 0, text


BAD_CASES = {
    "dos_length": (["--num-atoms", 4, "--target-dos", "short.npy"], "399 energy points, expected 400"),
    "dos_nan": (["--num-atoms", 4, "--target-dos", "nan.csv"], "NaN or inf"),
    "unknown_element": (["--num-atoms", 4, "--fixed-types", "0=Xx"], "unknown element 'Xx'"),
    "zero_atoms": (["--num-atoms", 0], "at least one atom"),
    "zero_volume": (["--template", "POSCAR", "--t0", 5], "zero volume"),
    "corrupt_checkpoint": (["--num-atoms", 4, "--checkpoint", "corrupt.pt"], "truncated, corrupt"),
    "mask_atom": (["--num-atoms", 3, "--target-dos", "t2", "--condition-atoms", "0,3"],
                  "conditioned atom 3 does not exist"),
    "fixed_atom": (["--num-atoms", 3, "--fixed-types", "5=Ni"], "names atom 5"),
    "row_count": (["--num-atoms", 4, "--target-dos", "t2", "--condition-atoms", "0,1,2"],
                  "2 target DOS rows for 3 conditioned atoms"),
    "t0_without_template": (["--num-atoms", 4, "--t0", 5], "--t0 needs --template"),
    "wrong_kind": (["--num-atoms", 4, "--checkpoint", "reg"], "needs a diffusion model"),
    "missing_target": (["--num-atoms", 4, "--target-dos", "none.npy"], "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_sample_bad_input_exit_2_nothing_written(ws, tmp_path, capsys, case):
    d, _ = ws
    np.save(tmp_path / "short.npy", np.ones((1, 399)))
    bad = np.ones((2, 400))
    bad[1, 7] = np.nan
    np.savetxt(tmp_path / "nan.csv", bad, delimiter=",")
    (tmp_path / "POSCAR").write_text("flat\n1.0\n1 0 0\n0 1 0\n1 1 0\nNa\n1\nDirect\n0 0 0\n")
    data = (d / "diff.pt").read_bytes()
    (tmp_path / "corrupt.pt").write_bytes(data[: len(data) // 3])
    names = {"short.npy": tmp_path / "short.npy", "nan.csv": tmp_path / "nan.csv", "POSCAR": tmp_path / "POSCAR",
             "corrupt.pt": tmp_path / "corrupt.pt", "t2": d / "t2.npy", "reg": d / "reg.pt",
             "none.npy": tmp_path / "none.npy"}
    extra, message = BAD_CASES[case]
    extra = [names.get(e, e) if isinstance(e, str) else e for e in extra]
    out = tmp_path / "gen"
    argv = sample_args(d, out)
    if "--checkpoint" in extra:  # replace the default checkpoint
        i = extra.index("--checkpoint")
        argv[2] = extra[i + 1]
        extra = extra[:i] + extra[i + 2:]
    code, text = run(capsys, *argv, *extra)
    assert code == 2, text
    assert message in text
    assert text.startswith("dosmatgen sample: error:")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gen")]


def test_sample_refuses_foreign_output_folder(ws, tmp_path, capsys):
    d, _ = ws
    (tmp_path / "keep.txt").write_text("precious")
    code, text = run(capsys, *sample_args(d, tmp_path, "--num-atoms", 2))
    assert code == 2 and "not empty" in text
    assert (tmp_path / "keep.txt").read_text() == "precious"


# ---- input parsers -------------------------------------------------------------------------------------
def test_read_target_dos_formats(tmp_path):
    rows = np.random.default_rng(0).random((2, 400))
    np.save(tmp_path / "a.npy", rows)
    np.savez(tmp_path / "b.npz", dos=rows, other=np.zeros(3))
    np.savez(tmp_path / "c.npz", rows)
    (tmp_path / "d.json").write_text(json.dumps(rows.tolist()))
    (tmp_path / "e.json").write_text(json.dumps([{"dos": r.tolist()} for r in rows]))
    np.savetxt(tmp_path / "f.csv", rows, delimiter=",", header=",".join(f"e{i}" for i in range(400)))
    np.savetxt(tmp_path / "g.txt", rows)
    for name in ("a.npy", "b.npz", "c.npz", "d.json", "e.json", "f.csv", "g.txt"):
        np.testing.assert_allclose(read_target_dos(tmp_path / name), rows, rtol=1e-12, err_msg=name)
    np.save(tmp_path / "one.npy", rows[0])
    assert read_target_dos(tmp_path / "one.npy").shape == (1, 400)
    np.save(tmp_path / "tr.npy", rows.T)
    with pytest.raises(DataError, match="transposed"):
        read_target_dos(tmp_path / "tr.npy")
    (tmp_path / "x.yaml").write_text("1")
    with pytest.raises(DataError, match="unknown target DOS format"):
        read_target_dos(tmp_path / "x.yaml")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        read_target_dos(tmp_path / "bad.json")


def test_parse_fixed_types():
    assert parse_fixed_types("0=Ni, 3=o,4=26") == {0: 28, 3: 8, 4: 26}
    with pytest.raises(DataError, match="unknown element 'Qq'"):
        parse_fixed_types("0=Qq")
    with pytest.raises(ConfigError, match="INDEX=ELEMENT"):
        parse_fixed_types("Ni")
    with pytest.raises(DataError, match="atomic number 120"):
        parse_fixed_types("0=120")


# ---- bench ---------------------------------------------------------------------------------------------
def test_bench_quick_cli_writes_json(tmp_path, capsys):
    code, text = run(capsys, "bench", "--quick", "--batch", 4, "--sample-batch", 4, "--steps", 1,
                     "--train-steps", 1, "--n-crystals", 16, "--device", "cpu", "--json", tmp_path / "b.json")
    assert code == 0, text
    rep = json.loads((tmp_path / "b.json").read_text())
    metrics = {(r["benchmark"], r["size"], r["metric"]): r for r in rep["results"]}
    train = metrics[("train", "tiny", "train_crystals_per_s")]
    assert train["value"] > 0 and train["batch"] == 4 and train["peak_mem_mib"] > 0
    no, yes = metrics[("sample", "tiny", "s_per_step_no_cfg")], metrics[("sample", "tiny", "s_per_step_cfg")]
    ratio = metrics[("sample", "tiny", "cfg_over_no_cfg")]["value"]
    assert no["value"] > 0 and yes["value"] > 0
    assert ratio == pytest.approx(yes["value"] / no["value"])
    assert rep["environment"]["nproc"] >= 1 and "loadavg_1_5_15" in rep["environment"]
    assert "cfg_over_no_cfg" in text


def test_bench_extension_hook(monkeypatch):
    from dosmatgen import bench

    monkeypatch.setattr(bench, "BENCHMARKS", dict(bench.BENCHMARKS))

    @bench.register_benchmark("fake", quick=True)
    def fake(ctx):
        """A stand-in for the evaluation helper's benchmarks."""
        return [{"size": "-", "metric": "pairs_per_s", "value": 3.0, "unit": "1/s", "n": len(ctx.crystals)}]

    ctx = bench.BenchContext(sizes=["tiny"], device=torch.device("cpu"), crystals=bench.mp20_like_crystals(5))
    rep = bench.run_benchmarks(["fake"], ctx)
    assert rep["results"] == [{"benchmark": "fake", "size": "-", "metric": "pairs_per_s", "value": 3.0,
                               "unit": "1/s", "n": 5}]
    with pytest.raises(ConfigError, match="unknown benchmark"):
        bench.run_benchmarks(["nope"], ctx)
    with pytest.raises(ConfigError, match="unknown size"):
        bench.run_benchmarks(["fake"], bench.BenchContext(sizes=["huge"], device=torch.device("cpu")))


def test_mp20_like_crystals_and_json(tmp_path):
    from dosmatgen.bench import crystals_from_json, mp20_like_crystals

    pool = mp20_like_crystals(400, seed=0)
    mean = np.mean([c.num_atoms for c in pool])
    assert 8.5 < mean < 11.5 and max(c.num_atoms for c in pool) <= 20
    (tmp_path / "c.json").write_text(json.dumps({"structures": [
        {"id": "x", "abc": [4, 4, 4], "angles": [90, 90, 90], "species": ["Na", "Cl"],
         "frac": [[0, 0, 0], [0.5, 0.5, 0.5]]}]}))
    recs = crystals_from_json(tmp_path / "c.json")
    assert recs[0].num_atoms == 2 and recs[0].dos.shape == (2, 400)
    (tmp_path / "bad.json").write_text(json.dumps({"structures": [{"abc": [1]}]}))
    with pytest.raises(DataError):
        crystals_from_json(tmp_path / "bad.json")
