"""Predictor-corrector sampler: exactness with an oracle, masks, fixed types, seeds, t0, validity, output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.io import read as ase_read
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch, NoisyBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.denoiser import DenoiserOutput
from dosmatgen.model.diffusion import JointDiffusion
from dosmatgen.generate.guidance import ClassifierFreeGuidance
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.generate.runner import generate
from dosmatgen.generate.sampler import sample, timestep_schedule
from dosmatgen.generate.writer import write_structures
from dosmatgen.model.wrapped_normal import wrapped_normal_score
from test_model_crystals import _one_thread, toy_records, train, trained_diffusion  # noqa: F401

MATCHER = dict(stol=0.5, angle_tol=10, ltol=0.3)  # the paper's tolerances


class Oracle:
    """The exact noise / score of a data distribution that is a point mass at ``clean`` (its
    lattice channel scaled as the model's ``lattice_scale`` says, unless ``scaled=False``)."""

    def __init__(self, clean: CrystalBatch, scaled: bool = True):
        self.c, self.scaled = NoisyBatch.from_clean(clean), scaled

    def predict(self, diffusion, st, t):
        s = diffusion.schedule
        ab = s.alphas_cumprod[t]
        ea = (st.types - ab.sqrt()[st.batch, None] * self.c.types) / (1 - ab).sqrt()[st.batch, None]
        lat0 = self.c.lattices / s.lattice_factor(self.c.num_atoms) if self.scaled else self.c.lattices
        el = (st.lattices - ab.sqrt()[:, None, None] * lat0) / (1 - ab).sqrt()[:, None, None]
        sx = wrapped_normal_score(st.frac_coords - self.c.frac_coords, s.sigma_x[t][st.batch, None])
        return DenoiserOutput(ea, sx, el)


class Recorder:
    """Wraps a guidance and records what the sampler hands it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def predict(self, diffusion, st, t):
        self.calls.append((int(t[0]), st.types.clone(), st.cond_mask.clone()))
        return self.inner.predict(diffusion, st, t)


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return JointDiffusion(ModelConfig.tiny(), DiffusionConfig())


def test_timestep_schedule():
    assert timestep_schedule(5) == [5, 4, 3, 2, 1, 0]
    ts = timestep_schedule(1000, 7)
    assert len(ts) == 8 and ts[0] == 1000 and ts[-1] == 0 and all(a > b for a, b in zip(ts, ts[1:]))
    assert timestep_schedule(999, 999) == list(range(999, -1, -1))
    with pytest.raises(ConfigError):
        timestep_schedule(10, 11)


@pytest.mark.parametrize("kwargs", [{}, {"steps": 7}, {"t0": 300, "steps": 10}, {"start_at_T": True},
                                    {"step_lr": 0.0}])
def test_oracle_denoiser_recovers_the_structure_exactly(untrained, kwargs):
    """With the exact noise and score of a point mass the reverse process must land on it:
    checks the predictor (A2-A4, A7), the VE step for X, the corrector and the striding."""
    spec = CrystalBatch.from_records(toy_records())
    res = sample(untrained, spec, guidance=Oracle(spec), progress=False, **kwargs)
    assert torch.equal(res.atom_types, spec.atom_types)
    assert float((res.lattices - spec.lattices).abs().max()) < 1e-4
    dx = (res.frac_coords - spec.frac_coords + 0.5) % 1.0 - 0.5
    assert float(dx.abs().max()) < 1e-4


@pytest.mark.parametrize("kwargs", [{}, {"t0": 300, "steps": 10}])
def test_lattice_scaled_by_the_atom_count_returns_the_lattice(kwargs):
    """lattice_scale="atoms": the channel is L / N^(1/3) and the sampler scales it back, so the
    oracle of a point mass lands on its lattice (from the prior and from a noised start); an
    oracle that ignores the scaling (negative control) lands on N^(1/3) L instead."""
    torch.manual_seed(0)
    model = JointDiffusion(ModelConfig.tiny(), DiffusionConfig(lattice_scale="atoms"))
    spec = CrystalBatch.from_records(toy_records())
    factor = spec.num_atoms.float().pow(1 / 3).view(-1, 1, 1)
    assert float(factor.min()) > 1.2  # the toy crystals have several atoms: the scaling is visible
    res = sample(model, spec, guidance=Oracle(spec), progress=False, **kwargs)
    assert float((res.lattices - spec.lattices).abs().max()) < 1e-4
    if not kwargs:
        wrong = sample(model, spec, guidance=Oracle(spec, scaled=False), progress=False)
        assert float((wrong.lattices - factor * spec.lattices).abs().max()) < 1e-3
    batch = CrystalBatch.from_records(toy_records())
    t = torch.ones(batch.num_graphs, dtype=torch.long)  # at t = 1 the channel is ~ the scaled clean lattice
    state, _ = model.schedule.noise(batch, t, torch.Generator().manual_seed(0))
    assert float((state.lattices * factor - batch.lattices).abs().max()) < 0.1
    assert float(model.loss(batch, torch.Generator().manual_seed(0))["loss"]) > 0
    with pytest.raises(ConfigError, match="lattice_scale"):
        DiffusionConfig(lattice_scale="volume")
    from dosmatgen.generate.guidance import ClassifierGuidance
    from dosmatgen.model.regressor import TimeDependentDOSRegressor

    plain = TimeDependentDOSRegressor(ModelConfig.tiny(), DiffusionConfig())  # sees unscaled lattices
    with pytest.raises(ConfigError, match="lattice_scale"):
        sample(model, spec, guidance=ClassifierGuidance(plain), steps=2, progress=False)
    alike = TimeDependentDOSRegressor(ModelConfig.tiny(), DiffusionConfig(lattice_scale="atoms"))
    assert sample(model, spec, guidance=ClassifierGuidance(alike), steps=2, progress=False).num_graphs == spec.num_graphs
    # the regressor on a clean crystal sees the lattice as it was trained to, scaled (the
    # unscaled lattice, the negative control, gives another prediction)
    with torch.no_grad():
        got = alike.predict_clean(batch)
        scaled = NoisyBatch.from_clean(batch).replace(lattices=batch.lattices / factor)
        assert torch.allclose(got, alike(scaled, 1))
        assert not torch.allclose(got, alike(NoisyBatch.from_clean(batch), 1))


def test_same_seed_same_crystals_and_other_seed_other_crystals(untrained):
    spec = CrystalBatch.for_generation([3, 4])
    a = sample(untrained, spec, steps=20, seed=3, progress=False)
    b = sample(untrained, spec, steps=20, seed=3, progress=False)
    c = sample(untrained, spec, steps=20, seed=4, progress=False)
    assert torch.equal(a.frac_coords, b.frac_coords) and torch.equal(a.lattices, b.lattices)
    assert torch.equal(a.atom_types, b.atom_types)
    assert not torch.equal(a.frac_coords, c.frac_coords)


def test_fixed_types_are_clamped_at_every_step_and_masks_are_passed():
    model, _, _ = trained_diffusion()
    recs = toy_records(["SrTiO3", "Cu3Au", "NaCl"])
    spec = CrystalBatch.from_records(recs, cond_mask=[[0, 1], None, []], fixed_mask=[[1], [0, 3], None])
    pd = 46  # palladium: in none of the training crystals
    spec.atom_types[spec.fixed_mask] = pd
    rec = Recorder(ClassifierFreeGuidance(1.0))
    res = sample(model, spec, guidance=rec, steps=40, seed=0, progress=False)
    assert res.atom_types[spec.fixed_mask].tolist() == [pd, pd, pd]
    assert torch.equal(res.cond_mask, spec.cond_mask) and torch.equal(res.fixed_mask, spec.fixed_mask)
    assert torch.equal(res.dos, spec.dos) and res.structure_ids == spec.structure_ids
    assert len(rec.calls) == 80  # corrector + predictor per step
    onehot = torch.nn.functional.one_hot(torch.tensor(pd - 1), 100).float()
    abar = model.schedule.alphas_cumprod
    for t, types, cond in rec.calls:
        assert torch.equal(cond, spec.cond_mask)
        resid = (types[spec.fixed_mask] - abar[t].sqrt() * onehot) / (1 - abar[t]).sqrt()
        assert abs(float(resid.mean())) < 0.25 and 0.75 < float(resid.std()) < 1.25, t
    # the fixed atoms really were pinned: late in the chain their Pd channel dominates
    late_types = rec.calls[-1][1]
    assert bool((late_types[spec.fixed_mask].argmax(-1) == pd - 1).all())


def test_allowed_types_restrict_decoded_elements_but_not_fixed_ones(untrained):
    spec = CrystalBatch.for_generation([4, 5, 3], fixed_types=[[0, 0, 0, 0], [46, 0, 0, 0, 0], None])
    free = sample(untrained, spec, steps=5, seed=1, progress=False)
    allowed = {8, 28, 79}
    assert not set(free.atom_types[~spec.fixed_mask].tolist()) <= allowed  # untrained: any element
    res = sample(untrained, spec, steps=5, seed=1, progress=False, allowed_types=sorted(allowed))
    assert set(res.atom_types[~spec.fixed_mask].tolist()) <= allowed
    assert res.atom_types[spec.fixed_mask].tolist() == [46]
    assert torch.equal(res.frac_coords, free.frac_coords)  # only the decoding changes
    for bad in ([], [0, 8], [101]):
        with pytest.raises(ConfigError, match="allowed_types"):
            sample(untrained, spec, steps=2, progress=False, allowed_types=bad)


def test_chain_from_the_prior_starts_at_T_minus_one_unless_asked(untrained):
    spec = CrystalBatch.for_generation([2])
    rec = Recorder(ClassifierFreeGuidance(1.0))
    sample(untrained, spec, guidance=rec, steps=3, progress=False)
    assert [c[0] for c in rec.calls][::2] == [999, 666, 333]
    rec = Recorder(ClassifierFreeGuidance(1.0))
    sample(untrained, spec, guidance=rec, steps=2, start_at_T=True, progress=False)
    assert [c[0] for c in rec.calls][::2] == [1000, 500]
    rec = Recorder(ClassifierFreeGuidance(1.0))
    sample(untrained, spec, guidance=rec, steps=1000, step_lr=0.0, progress=False)  # capped at 999
    assert len(rec.calls) == 999


class CorrectorSensitive:
    """Wraps a guidance and records the coordinates each network evaluation sees."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def predict(self, diffusion, st, t):
        self.seen.append(st.frac_coords.clone())
        return self.inner.predict(diffusion, st, t)


def test_predictor_input_pre_corrector_reuses_the_corrector_evaluation(untrained):
    """The authors' cfg_sample: one evaluation per step, on the pre-corrector coordinates; the
    default re-evaluates after the corrector (two per step) and so ends elsewhere."""
    spec = CrystalBatch.for_generation([3, 2])
    runs = {}
    for mode in ("corrected", "pre_corrector"):
        rec = CorrectorSensitive(ClassifierFreeGuidance(1.0))
        runs[mode] = (sample(untrained, spec, guidance=rec, steps=4, seed=0, progress=False,
                             predictor_input=mode), rec.seen)
    assert len(runs["corrected"][1]) == 8 and len(runs["pre_corrector"][1]) == 4
    # the first evaluation (corrector, at the prior) is the same; afterwards the chains part
    assert torch.equal(runs["corrected"][1][0], runs["pre_corrector"][1][0])
    assert not torch.equal(runs["corrected"][0].frac_coords, runs["pre_corrector"][0].frac_coords)
    # without a corrector the two modes are one chain
    a = sample(untrained, spec, steps=4, step_lr=0.0, seed=0, progress=False, predictor_input="pre_corrector")
    b = sample(untrained, spec, steps=4, step_lr=0.0, seed=0, progress=False)
    assert torch.equal(a.frac_coords, b.frac_coords) and torch.equal(a.lattices, b.lattices)
    with pytest.raises(ConfigError, match="predictor_input"):
        sample(untrained, spec, steps=2, progress=False, predictor_input="after")


def test_argument_errors(untrained):
    spec = CrystalBatch.for_generation([2])
    with pytest.raises(ConfigError, match="t0"):
        sample(untrained, spec, t0=1001, progress=False)
    with pytest.raises(ConfigError, match="steps"):
        sample(untrained, spec, steps=0, progress=False)
    with pytest.raises(ConfigError, match="step_lr"):
        sample(untrained, spec, step_lr=-1.0, progress=False)


def test_generated_crystals_are_valid():
    model, _, _ = trained_diffusion()
    recs = toy_records()
    spec = CrystalBatch.from_records(recs)
    res = sample(model, spec, steps=100, seed=1, progress=False)
    assert bool(torch.isfinite(res.lattices).all() and torch.isfinite(res.frac_coords).all())
    assert bool((torch.linalg.det(res.lattices) > 0).all())
    assert bool(((res.frac_coords >= 0) & (res.frac_coords < 1)).all())
    assert bool(((res.atom_types >= 1) & (res.atom_types <= 100)).all())
    structs = res.to_structures()
    assert all(s is not None and s.volume > 0 for s in structs)
    # conditioned on the training DOS, the compositions mostly come back
    same = sum(s.composition.reduced_formula == r.formula for s, r in zip(structs, recs))
    assert same >= 5, same
    chunked = generate(model, spec, SamplerOptions(batch_size=3, steps=10, seed=0), progress=False)
    assert len(chunked) == 8 and chunked.source_ids == spec.structure_ids


def test_denoising_from_a_noised_template_returns_it():
    model, _, _ = trained_diffusion()
    recs = toy_records()
    res = sample(model, CrystalBatch.from_records(recs), t0=100, seed=0, progress=False)
    sm = StructureMatcher(**MATCHER)
    matched = sum(sm.fit(s, r.to_structure()) for s, r in zip(res.to_structures(), recs))
    assert matched >= 6, matched


def test_write_structures(tmp_path):
    structs = [r.to_structure() for r in toy_records(["NaCl", "SrTiO3"])]
    out = write_structures(structs + [None], tmp_path / "gen", names=["a", "b", "c"])
    assert [p.name for p in out["cif"]] == ["a.cif", "b.cif"]
    assert Structure.from_file(out["cif"][1]).composition.reduced_formula == "SrTiO3"
    frames = ase_read(out["extxyz"][0], index=":")
    assert len(frames) == 2 and frames[1].info["structure_id"] == "b"
    assert np.allclose(frames[0].cell.array, structs[0].lattice.matrix)
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["a.cif", "b.cif", "structures.extxyz"]
    with pytest.raises(ConfigError, match="format"):
        write_structures(structs, tmp_path, fmt=("poscar",))


@pytest.mark.slow
def test_model_overfitted_on_one_crystal_regenerates_it_from_T():
    torch.manual_seed(0)
    recs = toy_records(["CsCl"])
    model = JointDiffusion(ModelConfig(hidden_dim=128, num_layers=3, num_freqs=10, time_dim=64), DiffusionConfig())
    train(model, recs, steps=1000, lr=3e-3, repeat=16)
    res = sample(model.eval(), CrystalBatch.from_records(recs * 8), seed=0, progress=False)  # all T steps
    sm = StructureMatcher(**MATCHER)
    ref = recs[0].to_structure()
    matched = sum(sm.fit(s, ref) for s in res.to_structures())
    assert matched >= 3, matched
