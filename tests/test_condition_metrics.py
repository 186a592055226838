"""Does a generated atom have the element of the atom whose DOS conditioned it? Element accuracy,
the DOS-lookup baseline, the unconditional model (CFG at ω = -1) and their Table 2 rows."""

import csv
import json

import numpy as np
import pytest
import torch

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.dos.grid import ENERGY_GRID, N_DOS
from dosmatgen.errors import DataError
from dosmatgen.evaluate import claims as C
from dosmatgen.evaluate import lookup as L
from dosmatgen.evaluate import metrics as M
from dosmatgen.generate.generated import GeneratedSet, concat_generated, load_generated
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.generate.runner import build_guidance, regenerate
from dosmatgen.evaluate import tables as TB
from dosmatgen.evaluate.score import score_generated, write_metrics
from dosmatgen.model.surrogate import SurrogateConfig, SurrogateDOSModel
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.diffusion import JointDiffusion
from test_regenerate import T, toy_records
from test_tables import GOOD, fake_metrics, write_set

Z = np.array


# ----------------------------------------------------------------------------------------------
# ElementAccuracy
# ----------------------------------------------------------------------------------------------
def test_element_accuracy_known_answers():
    acc = M.ElementAccuracy()
    same = acc.compute([Z([22, 8, 8])], [Z([22, 8, 8])])
    assert same.value == 100.0 and same.unit == "%" and same.name == "element_accuracy"
    # pooled over atoms, not averaged over structures: 4 of 4 right and 0 of 1 right is 80 %, not 50 %
    pooled = acc.compute([Z([11, 17, 11, 17]), Z([29])], [Z([11, 17, 11, 17]), Z([79])])
    assert pooled.value == pytest.approx(80.0)
    assert pooled.counts == {"atoms_correct": 4, "atoms_total": 5, "structures": 2, "structures_all_correct": 1,
                             "atom_count_mismatch_counted_as_miss": 0}
    assert pooled.n_total == pooled.n_used == 5 and pooled.excluded == {}
    assert acc.compute([], []).value is None
    with pytest.raises(ValueError, match="2 generated but 1"):
        acc.compute([Z([1]), Z([1])], [Z([1])])


def test_element_accuracy_negative_controls_that_composition_match_misses():
    """A permutation keeps the composition (match) with every atom wrong; the right element set in
    the wrong counts misses the composition but keeps most atoms right."""
    permuted, ref = Z([17, 11, 17, 11]), Z([11, 17, 11, 17])
    assert M.reduced_formula(permuted) == M.reduced_formula(ref) == "NaCl"
    assert M.CompositionMatchRate().from_formulas([M.reduced_formula(permuted)], ["NaCl"]).value == 100.0
    assert M.ElementAccuracy().compute([permuted], [ref]).value == 0.0
    wrong_counts, tio2 = Z([22, 22, 8]), Z([22, 8, 8])
    assert M.reduced_formula(wrong_counts) == "Ti2O" and M.reduced_formula(tio2) == "TiO2"
    assert M.ElementAccuracy().compute([wrong_counts], [tio2]).value == pytest.approx(200 / 3)


def test_element_accuracy_counts_bad_entries_as_misses():
    acc = M.ElementAccuracy()
    r = acc.compute([Z([0, 101]), None, Z([8, 8, 8])], [Z([1, 100]), Z([26, 26]), Z([8, 8])])
    assert r.value == 0.0  # Z outside 1..100 is wrong; no generated types / another atom count: all missed
    assert r.counts["atom_count_mismatch_counted_as_miss"] == 2 and r.counts["atoms_total"] == 6
    assert M.ElementAccuracy.per_structure(Z([8, 8, 8]), Z([8, 8])) is None


def test_composition_from_formulas_agrees_with_structures():
    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    by_structure = M.CompositionMatchRate().compute([nacl, cscl, None], [nacl] * 3)
    by_formula = M.CompositionMatchRate().from_formulas(
        [M.reduced_formula(Z([11, 17])), M.reduced_formula(Z([55, 17])), None], ["NaCl"] * 3)
    assert by_structure == by_formula and by_formula.value == pytest.approx(100 / 3)
    assert M.reduced_formula(Z([])) is None


# ----------------------------------------------------------------------------------------------
# score_generated: element accuracy of unbuildable crystals from their types
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    diff = JointDiffusion(ModelConfig.tiny(), DiffusionConfig(timesteps=T, sigma_norm_samples=200)).eval()
    sur = SurrogateDOSModel.from_config(SurrogateConfig.tiny().to_dict()).eval()
    recs = toy_records()
    return diff, sur, DOSStandardiser.fit([r.dos for r in recs]), recs


def one(rec, types=None, frac=None):
    return GeneratedSet([rec.structure_id], np.array([0, rec.num_atoms]),
                          rec.atomic_numbers if types is None else types,
                          rec.frac_coords if frac is None else frac, rec.lattice[None], {})


def test_score_reports_element_accuracy_per_set_and_per_structure(tiny, tmp_path):
    _, sur, std, recs = tiny
    nacl, cscl, srtio3 = recs[0], recs[1], recs[2]
    gen = concat_generated([
        one(nacl),                                                       # 2 of 2, composition match
        one(cscl, frac=np.full_like(cscl.frac_coords, np.nan)),          # unbuildable: 2 of 2 by types, no match
        one(srtio3, types=Z([22, 38, 8, 8, 8])),                          # Sr <-> Ti swapped: 3 of 5, match
    ], {"guidance": "uncond", "t0": 1000, "start": "prior"})
    res = score_generated(gen, {r.structure_id: r for r in recs}, sur, std, progress=False,
                          per_structure_csv=tmp_path / "m.per_structure.csv")
    ea = res["metrics"]["element_accuracy"]
    assert ea["value"] == pytest.approx(100 * 7 / 9) and ea["counts"]["atoms_correct"] == 7
    assert ea["counts"]["structures_all_correct"] == 2
    assert res["metrics"]["composition_match_rate"]["value"] == pytest.approx(200 / 3)
    assert res["guidance"] == "uncond"
    rows = list(csv.DictReader(open(tmp_path / "m.per_structure.csv")))
    assert [(r["n_atoms"], r["element_correct"], r["composition_match"]) for r in rows] == [
        ("2", "2", "1"), ("2", "2", "0"), ("5", "3", "1")]
    assert float(rows[2]["element_accuracy"]) == pytest.approx(60.0) and rows[1]["build_reason"] == "non_finite"


def test_score_splits_a_mixed_test_set_by_source(tiny):
    """Prototype and real MP-20 test crystals get their own set metrics (the real-crystal rows of
    Tables 1-2); a one-source set gets none (negative control)."""
    import dataclasses

    _, sur, std, recs = tiny
    nacl = dataclasses.replace(recs[0], structure_id="builtin-rocksalt-Na-Cl")
    cscl = dataclasses.replace(recs[1], structure_id="builtin-cscl-Cs-Cl")
    srtio3 = dataclasses.replace(recs[2], structure_id="mp20-mp-5229")
    refs = {r.structure_id: r for r in (nacl, cscl, srtio3)}
    gen = concat_generated([one(nacl), one(cscl, types=Z([55, 55])), one(srtio3, types=Z([22, 38, 8, 8, 8]))],
                             {"guidance": "cfg", "t0": 1000, "start": "prior"})
    res = score_generated(gen, refs, sur, std, progress=False)
    parts = res["by_source"]
    assert sorted(parts) == ["mp20", "prototypes"]
    assert parts["prototypes"]["n_structures"] == 2 and parts["mp20"]["n_structures"] == 1
    assert parts["prototypes"]["metrics"]["element_accuracy"]["value"] == pytest.approx(75.0)  # 3 of 4 atoms
    assert parts["mp20"]["metrics"]["element_accuracy"]["value"] == pytest.approx(60.0)        # 3 of 5
    assert res["metrics"]["element_accuracy"]["value"] == pytest.approx(100 * 6 / 9)
    assert parts["mp20"]["metrics"]["mae_yhat_y"]["n_used"] == 1  # the surrogate's error on the real crystal
    one_source = score_generated(concat_generated([one(nacl), one(cscl)], {"guidance": "cfg", "t0": 1000}),
                                 refs, sur, std, progress=False)
    assert one_source["by_source"] == {}


# ----------------------------------------------------------------------------------------------
# the DOS lookup
# ----------------------------------------------------------------------------------------------
def test_nearest_neighbours_chunked_equals_brute_force_and_keeps_the_first_tie():
    rng = np.random.default_rng(0)
    ref, query = rng.normal(size=(53, 7)), rng.normal(size=(19, 7))
    ref[40] = ref[3]  # a duplicate later in the list never wins
    query[0] = ref[3]
    brute = np.abs(query[:, None, :] - ref[None, :, :]).sum(-1)
    for qc, rc in ((1, 1), (4, 10), (1024, 8192)):
        idx, dist = L.nearest_neighbours(query, ref, query_chunk=qc, reference_chunk=rc)
        np.testing.assert_array_equal(idx, brute.argmin(1))
        np.testing.assert_allclose(dist, brute.min(1), rtol=1e-5)
        assert idx[0] == 3
    with pytest.raises(DataError, match="no reference rows"):
        L.nearest_neighbours(query, ref[:0])
    with pytest.raises(DataError, match="do not pair up"):
        L.nearest_neighbours(query, ref[:, :3])


def peak(center: float, width: float = 0.5) -> np.ndarray:
    return np.exp(-0.5 * ((ENERGY_GRID - center) / width) ** 2).astype(np.float32)


#: A distinct DOS shape per element (a peak at its own energy).
SHAPES = {8: peak(-6.0), 22: peak(1.0), 26: peak(-1.0), 79: peak(-3.5)}


def rec(sid, zs, dos=None, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    if dos is None:
        dos = np.stack([SHAPES[z] for z in zs]) + noise * rng.random((len(zs), N_DOS)).astype(np.float32)
    n = len(zs)
    return CrystalRecord(sid, Z(zs), rng.random((n, 3)), np.eye(3) * 4.0, np.asarray(dos, np.float32))


TRAIN = [rec("tr-TiO2", [22, 8, 8]), rec("tr-Fe", [26]), rec("tr-AuFe", [79, 26])]
STD = DOSStandardiser.fit([r.dos for r in TRAIN])


def test_lookup_finds_the_element_of_a_noisy_training_dos(tmp_path):
    test = [rec("te-FeO", [26, 8], noise=0.05, seed=1), rec("te-Au3Ti", [79, 79, 22, 79], noise=0.05, seed=2)]
    res = L.score_lookup(test, TRAIN, STD, per_structure_csv=tmp_path / "lk.per_structure.csv",
                         inputs={"store": "s.npz"})
    m = res["metrics"]
    assert m["element_accuracy"]["value"] == 100.0 and m["composition_match_rate"]["value"] == 100.0
    assert res["guidance"] == "lookup" and res["t0"] is None and res["n_structures"] == 2
    assert res["lookup"]["n_train_atoms"] == 6 and res["lookup"]["store"] == "s.npz"
    rows = list(csv.DictReader(open(tmp_path / "lk.per_structure.csv")))
    assert rows[0]["formula_lookup"] == "FeO" and rows[0]["neighbours"].split(";")[1] == "tr-TiO2#1"
    assert rows[1]["formula_ref"] == "TiAu3" and rows[1]["element_correct"] == "4"


def test_lookup_negative_control_uninformative_dos():
    """Every training atom has the same DOS: the lookup returns the first training atom's element
    (Ti) for every test atom, so only the Ti atoms are right."""
    flat = np.full(N_DOS, 0.3, np.float32)
    train = [rec("tr-TiO2", [22, 8, 8], dos=np.stack([flat] * 3)), rec("tr-Fe", [26], dos=flat[None])]
    std = DOSStandardiser.fit([r.dos for r in train])
    test = [rec("te-FeO", [26, 8], dos=np.stack([flat] * 2)), rec("te-TiO2", [22, 8, 8], dos=np.stack([flat] * 3))]
    res = L.score_lookup(test, train, std)
    assert res["metrics"]["element_accuracy"]["value"] == pytest.approx(20.0)  # 1 of 5 atoms is Ti
    assert res["metrics"]["composition_match_rate"]["value"] == 0.0


def test_lookup_reads_the_dos_through_the_standardiser():
    """Bin 0 varies 1000x more than bin 1 over the training atoms: raw L1 is decided by bin 0,
    standardised L1 by bin 1."""
    a, b = np.zeros(N_DOS, np.float32), np.zeros(N_DOS, np.float32)
    a[0], b[1] = 100.0, 1.0
    train = [rec("tr-H", [1], dos=a[None]), rec("tr-Li", [3], dos=b[None])]
    q = np.zeros(N_DOS, np.float32)
    q[0], q[1] = 90.0, 1.0
    test = [rec("te-Li", [3], dos=q[None])]
    std = np.ones(N_DOS)
    std[0] = 1000.0
    scaled = DOSStandardiser(np.zeros(N_DOS), std)
    identity = DOSStandardiser(np.zeros(N_DOS), np.ones(N_DOS))
    assert L.score_lookup(test, train, scaled)["metrics"]["element_accuracy"]["value"] == 100.0
    assert L.score_lookup(test, train, identity)["metrics"]["element_accuracy"]["value"] == 0.0


def test_lookup_refuses_missing_dos():
    bare = CrystalRecord("bare", Z([8]), np.zeros((1, 3)), np.eye(3) * 4)
    with pytest.raises(DataError, match="no site DOS to look up"):
        L.score_lookup([bare], TRAIN, STD)
    with pytest.raises(DataError, match="training split has no site DOS"):
        L.score_lookup(TRAIN[:1], [bare], STD)


# ----------------------------------------------------------------------------------------------
# the unconditional model = CFG at ω = -1
# ----------------------------------------------------------------------------------------------
def test_uncond_guidance_is_cfg_at_minus_one_and_ignores_the_dos(tiny):
    diff, _, std, recs = tiny
    g = build_guidance(SamplerOptions(guidance="uncond"))
    assert repr(g) == "ClassifierFreeGuidance(omega=-1.0)"
    b = CrystalBatch.from_records(recs[:3], std)
    t = torch.tensor([5, 12, 19])
    state, _ = diff.schedule.noise(b, t, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = g.predict(diff, state, t)
        two_pass = diff.eps_cfg(state, t, -1.0)  # (1 + ω) eps(S_t, y) - ω eps(S_t, ∅) at ω = -1
        other_dos = g.predict(diff, state.replace(dos=torch.randn_like(state.dos)), t)
        cond = diff.eps_cfg(state, t, 1.0)
    for u, v, w, c in zip(out, two_pass, other_dos, cond):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(u, w, rtol=0, atol=0)
    assert not torch.allclose(out[0], cond[0])  # the conditional model does read the DOS


def test_uncond_regeneration_is_independent_of_the_condition(tiny, tmp_path):
    diff, _, std, recs = tiny
    scrambled = [CrystalRecord(r.structure_id, r.atomic_numbers, r.frac_coords, r.lattice,
                               np.random.default_rng(1).random(r.dos.shape).astype(np.float32)) for r in recs[:3]]
    a = regenerate(diff, std, recs[:3], tmp_path / "a.npz", SamplerOptions(guidance="uncond", steps=3),
                   progress=False)
    b = regenerate(diff, std, scrambled, tmp_path / "b.npz", SamplerOptions(guidance="uncond", steps=3),
                   progress=False)
    assert a.meta["guidance"] == "uncond" and "omega=-1.0" in a.meta["guidance_repr"]
    np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
    np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
    c = regenerate(diff, std, recs[:3], tmp_path / "c.npz", SamplerOptions(guidance="cfg", steps=3),
                   progress=False)
    assert "omega=1.0" in c.meta["guidance_repr"]  # the default guidance follows the mode


# ----------------------------------------------------------------------------------------------
# Table 2 rows, and old results without them
# ----------------------------------------------------------------------------------------------
def with_element_accuracy(m, value):
    m = json.loads(json.dumps(m))
    m["metrics"]["element_accuracy"] = M.MetricResult("element_accuracy", value, "%", 30, 30).to_dict()
    return m


def lookup_metrics(ea, cm, n=10):
    r = lambda name, v: M.MetricResult(name, v, "%", n, n).to_dict()
    return {"format": "dosmatgen-metrics", "version": 1, "guidance": "lookup", "t0": None, "start": None,
            "n_structures": n, "metrics": {"element_accuracy": r("element_accuracy", ea),
                                           "composition_match_rate": r("composition_match_rate", cm)},
            "lookup": {"store": "s.npz", "split": "split.json"}}


def test_table2_rows_for_the_baselines(tmp_path):
    sets = [with_element_accuracy(m, 60.0 + i) for i, m in enumerate(GOOD)]
    sets += [with_element_accuracy(fake_metrics("uncond", t, .3, .3, 1., 2.), 5.0) for t in (200, 500, 1000)]
    write_set(tmp_path / "m", sets)
    write_metrics(tmp_path / "m" / "lookup.json", lookup_metrics(51.25, 24.5))
    written = TB.write_tables(tmp_path / "m", tmp_path / "res")
    t2 = list(csv.DictReader(open(written["table2_match_rates"])))
    assert [(r["guidance"], r["T"]) for r in t2][6:] == [("uncond", "200"), ("uncond", "500"), ("uncond", "1000"),
                                                         ("lookup", "")]
    header = list(t2[0])
    assert header.index("element_accuracy") == header.index("paper_composition_match_rate") + 1
    assert float(t2[0]["element_accuracy"]) == 63.0  # classifier T=200 (GOOD[3]) is the paper's first row
    assert float(t2[-1]["element_accuracy"]) == 51.25
    assert t2[-1]["paper_composition_match_rate"] == "" and t2[-1]["structure_match_rate"] == ""
    t1 = list(csv.DictReader(open(written["table1_dos_mae"])))
    assert [r["guidance"] for r in t1][6:] == ["uncond"] * 3  # the lookup has no MAE row
    md = (tmp_path / "res" / "table2_match_rates.md").read_text()
    lookup_line = next(line for line in md.splitlines() if line.startswith("| DOS lookup (1-NN) |"))
    assert lookup_line.count("51.25 (—)") == 3 and lookup_line.count("24.50 (—)") == 3
    assert "| Unconditional (ω = −1) |" in md and "T=200 Elem. acc. %" in md
    prov = json.loads((tmp_path / "res" / "provenance.json").read_text())
    assert prov["sets"]["lookup"]["store"] == "s.npz" and "uncond_T500" in prov["sets"]
    claims = {c.id: c.status for c in C.write_claims(tmp_path / "res")}
    assert claims["cfg_beats_classifier_match_T1000"] == C.PASS


def test_old_results_without_element_accuracy_still_tabulate(tmp_path):
    write_set(tmp_path / "m", GOOD)
    written = TB.write_tables(tmp_path / "m", tmp_path / "res")
    t2 = list(csv.DictReader(open(written["table2_match_rates"])))
    assert len(t2) == 6 and all(r["element_accuracy"] == "" for r in t2)
    md = (tmp_path / "res" / "table2_match_rates.md").read_text()
    assert "DOS lookup" not in md and "Unconditional" not in md


# ----------------------------------------------------------------------------------------------
# the command line: regenerate --guidance uncond -> score -> lookup -> tables
# ----------------------------------------------------------------------------------------------
def test_cli_uncond_score_and_lookup(tiny, tmp_path, capsys):
    from dosmatgen.checkpoint import save_checkpoint
    from dosmatgen.cli import main
    from dosmatgen.data.split import save_split
    from dosmatgen.data.store import save_records

    diff, sur, _, _ = tiny
    recs = toy_records(8, seed=1)
    std = DOSStandardiser.fit([r.dos for r in recs[:5]])
    store, split, std_path = tmp_path / "store.npz", tmp_path / "split.json", tmp_path / "standardiser.json"
    save_records(store, recs)
    save_split(split, {"train": [r.structure_id for r in recs[:5]], "val": [recs[5].structure_id],
                       "test": [r.structure_id for r in recs[6:]]})
    std.save(std_path)
    save_checkpoint(tmp_path / "diffusion.pt", diff, "diffusion", std)
    save_checkpoint(tmp_path / "surrogate.pt", sur, "surrogate", std)
    common = ["--store", str(store), "--split", str(split), "--device", "cpu"]
    gen, metrics = tmp_path / "gen" / "uncond_T20.npz", tmp_path / "metrics"
    assert main(["evaluate", "regenerate", "--checkpoint", str(tmp_path / "diffusion.pt"), "--guidance", "uncond",
                 "--t0", str(T), "--steps", "3", "--out", str(gen), "--no-progress", *common]) == 0
    assert load_generated(gen).meta["omega"] == -1.0
    assert main(["evaluate", "score", "--generated", str(gen), "--surrogate", str(tmp_path / "surrogate.pt"),
                 "--out", str(metrics / "uncond_T20.json"), "--no-progress", *common]) == 0
    assert "element_accuracy" in capsys.readouterr().out
    scored = json.loads((metrics / "uncond_T20.json").read_text())
    assert scored["guidance"] == "uncond" and scored["metrics"]["element_accuracy"]["counts"]["structures"] == 2
    assert main(["evaluate", "score", "--generated", str(gen), "--surrogate", str(tmp_path / "surrogate.pt"),
                 "--limit", "1", "--no-novelty", "--out", str(tmp_path / "first.json"), "--no-progress", *common]) == 0
    assert json.loads((tmp_path / "first.json").read_text())["metrics"]["element_accuracy"]["counts"]["structures"] == 1
    lookup = ["evaluate", "lookup", "--standardiser", str(std_path), *common]
    assert main([*lookup, "--limit", "1", "--out", str(metrics / "lookup.json")]) == 0
    assert "element_accuracy" in capsys.readouterr().out
    lk = json.loads((metrics / "lookup.json").read_text())
    assert lk["n_structures"] == 1 and lk["lookup"]["limit"] == 1 and "command" in lk
    assert (metrics / "lookup.per_structure.csv").exists()
    # bad input: one line, exit 2, nothing written
    for bad, message in ((["--limit", "0"], "--limit must be >= 1"),
                         (["--standardiser", str(tmp_path / "nope.json")], "cannot read DOS standardiser"),
                         (["--chunk-size", "0"], "--chunk-size must be >= 1")):
        assert main([*lookup, *bad, "--out", str(tmp_path / "bad.json")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(SystemExit):
        main([*lookup, "--subset", "train", "--out", str(tmp_path / "bad.json")])
    assert main(["evaluate", "tables", "--metrics-dir", str(metrics), "--out", str(tmp_path / "res")]) == 0
    t2 = list(csv.DictReader(open(tmp_path / "res" / "table2_match_rates.csv")))
    assert {(r["guidance"], r["T"]) for r in t2 if r["n_structures"]} == {("uncond", "20"), ("lookup", "")}
