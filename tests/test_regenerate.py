"""Regeneration of a test split (chunked, resumable, seeded) and its scoring."""

import json

import numpy as np
import pytest
import torch

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.generate.generated import GeneratedSet, concat_generated, load_generated, save_generated
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.generate.runner import build_guidance, regenerate
from dosmatgen.generate.writer import write_cifs
from dosmatgen.evaluate.score import load_metrics, score_generated, write_metrics
from dosmatgen.model.surrogate import SurrogateConfig, SurrogateDOSModel
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.diffusion import JointDiffusion
from dosmatgen.model.regressor import TimeDependentDOSRegressor

T = 20


def toy_records(n=5, seed=0):
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    protos = [
        Structure(Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
        Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
        Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]),
        Structure(Lattice.cubic(3.95), ["Ni", "Au", "Au", "Au"], [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]),
    ]
    out = []
    for i in range(n):
        s = protos[i % len(protos)]
        out.append(CrystalRecord.from_structure(s, f"t{i}", dos=rng.random((len(s), 400)).astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    dcfg = DiffusionConfig(timesteps=T, sigma_norm_samples=200)
    diff = JointDiffusion(ModelConfig.tiny(), dcfg).eval()
    reg = TimeDependentDOSRegressor(ModelConfig.tiny(), dcfg).eval()
    sur = SurrogateDOSModel.from_config(SurrogateConfig.tiny().to_dict()).eval()
    recs = toy_records()
    std = DOSStandardiser.fit([r.dos for r in recs])
    return diff, reg, sur, std, recs


def test_steps_for_start_keeps_the_stride():
    assert SamplerOptions(steps=20).steps_from(1000, 1000) == 20
    assert SamplerOptions(steps=20).steps_from(200, 1000) == 4
    assert SamplerOptions(steps=20).steps_from(10, 1000) == 1
    assert SamplerOptions(steps=None).steps_from(200, 1000) is None
    with pytest.raises(ConfigError):
        SamplerOptions(steps=0).steps_from(200, 1000)


def test_regenerate_prior_aligned_resumable_and_seeded(models, tmp_path, monkeypatch):
    diff, _, _, std, recs = models
    out = tmp_path / "cfg.npz"
    gen = regenerate(diff, std, recs, out, SamplerOptions(steps=4, batch_size=2, seed=3),
                       progress=False, meta={"checkpoint": "x.pt"})
    assert gen.source_ids == [r.structure_id for r in recs]
    assert [len(gen.item(i)[0]) for i in range(len(gen))] == [r.num_atoms for r in recs]
    assert gen.meta["t0"] == T and gen.meta["start"] == "prior" and gen.meta["checkpoint"] == "x.pt"
    assert len(list((tmp_path / "cfg.npz.chunks").glob("chunk_*.npz"))) == 3
    loaded = load_generated(out)
    np.testing.assert_array_equal(loaded.frac_coords, gen.frac_coords)

    # resume: only the missing chunk is sampled, and the result is identical
    (tmp_path / "cfg.npz.chunks" / "chunk_00001.npz").unlink()
    out.unlink()
    import dosmatgen.generate.sampler as S

    calls = []
    real = S.sample
    monkeypatch.setattr(S, "sample", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    again = regenerate(diff, std, recs, out, SamplerOptions(steps=4, batch_size=2, seed=3),
                         progress=False)
    assert calls == [4]  # chunk 1 uses seed + 1
    np.testing.assert_array_equal(again.frac_coords, gen.frac_coords)
    np.testing.assert_array_equal(again.lattices, gen.lattices)

    # other settings into the same chunk folder are refused
    with pytest.raises(ConfigError, match="other settings"):
        regenerate(diff, std, recs, out, SamplerOptions(steps=4, batch_size=2, seed=4), progress=False)
    # another seed (fresh folder) gives other crystals
    other = regenerate(diff, std, recs, tmp_path / "o.npz", SamplerOptions(steps=4, batch_size=2, seed=4),
                       progress=False)
    assert not np.allclose(other.frac_coords, gen.frac_coords)


def test_regenerate_noised_start_and_classifier_guidance(models, tmp_path):
    diff, reg, _, std, recs = models
    options = SamplerOptions(guidance="classifier", guidance_scale=0.5, steps=8, batch_size=4)  # 2 steps from t0 = 5
    gen = regenerate(diff, std, recs[:3], tmp_path / "cl.npz", options,
                     t0=5, regressor=reg, progress=False)
    assert gen.meta["t0"] == 5 and gen.meta["start"] == "noised" and gen.meta["guidance"] == "classifier"
    assert "ClassifierGuidance" in gen.meta["guidance_repr"]
    assert gen.lattices.shape == (3, 3, 3)
    with pytest.raises(ConfigError, match="regressor"):
        build_guidance(SamplerOptions(guidance="classifier"))


def test_regenerate_refuses_records_without_dos(models, tmp_path):
    diff, _, _, std, recs = models
    bare = CrystalRecord("bare", recs[0].atomic_numbers, recs[0].frac_coords, recs[0].lattice)
    with pytest.raises(DataError, match="no site DOS"):
        regenerate(diff, std, [bare], tmp_path / "x.npz", SamplerOptions(), progress=False)


def test_save_load_keeps_broken_samples(tmp_path):
    gen = GeneratedSet(["a", "b"], np.array([0, 1, 3]), np.array([8, 11, 17]),
                         np.array([[np.nan, 0, 0], [0, 0, 0], [.5, .5, .5]]),
                         np.stack([np.zeros((3, 3)), np.eye(3) * 4]), {"guidance": "cfg"})
    save_generated(tmp_path / "g.npz", gen)
    back = load_generated(tmp_path / "g.npz")
    assert back.source_ids == ["a", "b"] and np.isnan(back.frac_coords[0, 0])
    assert [why for _, why in back.structures()] == ["non_finite", None]
    assert back.subset([1]).source_ids == ["b"]
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(DataError, match="not a dosmatgen generated"):
        load_generated(tmp_path / "other.npz")


def test_score_counts_add_up_and_known_cases(models, tmp_path):
    _, _, sur, std, recs = models
    refs = {r.structure_id: r for r in recs}
    # hand-made generated set: exact copies of t0 and t1, a NaN crystal for t2, t3 with overlapping atoms
    parts = []
    for r in recs[:2]:
        parts.append(GeneratedSet([r.structure_id], np.array([0, r.num_atoms]), r.atomic_numbers, r.frac_coords,
                                    r.lattice[None], {}))
    r2, r3 = recs[2], recs[3]
    parts.append(GeneratedSet([r2.structure_id], np.array([0, r2.num_atoms]), r2.atomic_numbers,
                                np.full_like(r2.frac_coords, np.nan), r2.lattice[None], {}))
    x3 = r3.frac_coords.copy()
    x3[1] = x3[0] + 0.01
    parts.append(GeneratedSet([r3.structure_id], np.array([0, r3.num_atoms]), r3.atomic_numbers, x3,
                                r3.lattice[None], {}))
    gen = concat_generated(parts, {"guidance": "cfg", "t0": 1000, "start": "prior"})
    training = [recs[0].to_structure()]
    res = score_generated(gen, refs, sur, std, training=training, progress=False,
                          per_structure_csv=tmp_path / "m.per_structure.csv")
    m = res["metrics"]
    for r in m.values():
        assert r["n_used"] + r["n_excluded"] == r["n_total"]
    assert m["mae_gen_y"]["excluded"] == {"non_finite": 1} and m["mae_gen_y"]["n_used"] == 3
    base = np.mean([np.abs(r.dos - std.mean).mean() for r in recs[:4]])
    assert m["mae_mean_dos_y"]["value"] == pytest.approx(base, rel=1e-5)
    # identical structures give identical surrogate predictions: MAE(ŷ_gen, ŷ) is 0 on t0, t1
    rows = (tmp_path / "m.per_structure.csv").read_text().splitlines()
    assert len(rows) == 5
    first = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert float(first["mae_gen_yhat"]) == pytest.approx(0.0, abs=1e-6)
    assert first["mae_gen_y"] == first["mae_yhat_y"]
    assert m["structure_match_rate"]["counts"] == {"matched": 2, "unbuildable_counted_as_miss": 1}
    assert m["structure_match_rate"]["value"] == pytest.approx(50.0)
    assert m["composition_match_rate"]["value"] == pytest.approx(75.0)
    assert m["validity"]["value"] == pytest.approx(50.0)
    assert m["validity"]["counts"] == {"valid": 2, "invalid_non_finite": 1, "invalid_overlapping_atoms": 1}
    assert m["uniqueness"]["value"] == pytest.approx(100.0)
    assert m["novelty"]["value"] == pytest.approx(50.0)  # t0 is in "training", t1 is not
    write_metrics(tmp_path / "m.json", res)
    assert load_metrics(tmp_path / "m.json")["metrics"]["validity"]["value"] == pytest.approx(50.0)
    json.dumps(res)


def test_score_on_sampled_output_and_cifs(models, tmp_path):
    diff, _, sur, std, recs = models
    gen = regenerate(diff, std, recs[:3], tmp_path / "g.npz", SamplerOptions(steps=3, batch_size=3), progress=False)
    res = score_generated(gen, {r.structure_id: r for r in recs}, sur, std, progress=False)
    assert res["n_structures"] == 3 and "novelty" not in res["metrics"]
    assert res["metrics"]["mae_yhat_y"]["n_used"] == 3
    n = write_cifs(gen, tmp_path / "cifs")
    assert n == len(list((tmp_path / "cifs").glob("*.cif")))
    with pytest.raises(DataError, match="not in the store"):
        score_generated(gen, {}, sur, std, progress=False)


def test_cli_end_to_end(models, tmp_path, capsys):
    """regenerate (cfg, classifier) -> score -> formation (EMT) -> tables -> claims through the CLI."""
    from dosmatgen.checkpoint import save_checkpoint
    from dosmatgen.cli import main
    from dosmatgen.data.split import save_split
    from dosmatgen.data.store import save_records

    diff, reg, sur, std, recs = models
    recs = toy_records(8, seed=1)
    store, split = tmp_path / "store.npz", tmp_path / "split.json"
    save_records(store, recs)
    save_split(split, {"train": [r.structure_id for r in recs[:5]], "val": [recs[5].structure_id],
                       "test": [r.structure_id for r in recs[6:]]})
    ck = {k: tmp_path / f"{k}.pt" for k in ("diffusion", "regressor", "surrogate")}
    save_checkpoint(ck["diffusion"], diff, "diffusion", std)
    save_checkpoint(ck["regressor"], reg, "regressor", std)
    save_checkpoint(ck["surrogate"], sur, "surrogate", std)
    common = ["--store", str(store), "--split", str(split), "--device", "cpu", "--no-progress"]
    for g, t0, extra in (("cfg", T, []), ("cfg", 5, []), ("classifier", T, ["--regressor", str(ck["regressor"])])):
        out = tmp_path / "gen" / f"{g}_T{t0}.npz"
        assert main(["evaluate", "regenerate", "--checkpoint", str(ck["diffusion"]), "--guidance", g, "--t0", str(t0),
                     "--steps", "4", "--batch-size", "2", "--out", str(out), *extra, *common]) == 0
        assert main(["evaluate", "score", "--generated", str(out), "--surrogate", str(ck["surrogate"]),
                     "--out", str(tmp_path / "metrics" / f"{g}_T{t0}.json"), *common]) == 0
    gen = load_generated(tmp_path / "gen" / "cfg_T5.npz")
    assert gen.source_ids == [r.structure_id for r in recs[6:]] and gen.meta["t0"] == 5
    assert gen.meta["steps"] == 1 and gen.meta["checkpoint"] == str(ck["diffusion"]) and "command" in gen.meta
    m = json.loads((tmp_path / "metrics" / "classifier_T20.json").read_text())
    assert m["guidance"] == "classifier" and m["metrics"]["novelty"]["n_total"] == 2
    assert (tmp_path / "metrics" / "cfg_T20.per_structure.csv").exists()
    # wrong model kind is a clear error (exit code 2)
    assert main(["evaluate", "regenerate", "--checkpoint", str(ck["surrogate"]), "--guidance", "cfg",
                 "--out", str(tmp_path / "x.npz"), *common]) == 2
    assert "not a diffusion model" in capsys.readouterr().err
    # formation of ground-truth test structures (Au3Ni and NaCl) with the toy EMT potential
    assert main(["evaluate", "formation", "--store", str(store), "--split", str(split), "--mlff", "emt",
                 "--steps", "2", "--refs-cache", str(tmp_path / "refs.json"), "--out",
                 str(tmp_path / "formation" / "ground_truth.json"), "--no-progress"]) == 0
    f = json.loads((tmp_path / "formation" / "ground_truth.json").read_text())
    assert f["n"] == 2 and f["mlff"] == "emt"
    res = tmp_path / "results"
    assert main(["evaluate", "tables", "--metrics-dir", str(tmp_path / "metrics"), "--formation",
                 str(tmp_path / "formation" / "ground_truth.json"), "--out", str(res)]) == 0
    for name in ("table1_dos_mae", "table2_match_rates", "formation_energies"):
        assert (res / f"{name}.csv").exists() and (res / f"{name}.md").exists()
    assert main(["evaluate", "claims", "--results", str(res)]) == 0
    out = capsys.readouterr().out
    assert "cfg_beats_classifier_mae_T1000" in out and (res / "claims.md").exists()


def test_evaluation_benchmarks(models):
    from dosmatgen import bench_eval as BE

    diff, _, sur, std, recs = models
    r = BE.bench_regeneration(diff, recs[:4], std, steps=2, batch_size=2)
    assert r["structures"] == 4 and r["structures_per_s"] > 0
    assert r["structures_per_s_at_1000_steps"] == pytest.approx(r["structures_per_s"] * 2 / 1000)
    m = BE.bench_structure_matcher([rec.to_structure() for rec in recs[:2]], n_pairs=2)
    assert m["match_outcomes"] == {"match": 2} and m["s_per_pair_match"] > 0
    s = BE.bench_surrogate(sur, recs, std, batch_size=2)
    assert s["structures"] == len(recs) and s["graph_failures"] == 0
