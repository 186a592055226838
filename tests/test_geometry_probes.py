"""Issue 35's session-13 geometry probes (``experiments/real_crystal_training``): the environment
guidance moves tied atoms towards equal surroundings and leaves untied atoms alone;
the no-model noise baseline keeps a crystal at a tiny noise and loses it at a large one; the
lattice-estimate probe changes the coordinates' score inside its window and nothing outside it."""

from __future__ import annotations

import torch
from pymatgen.core import Lattice, Structure

from dosmatgen.evaluate.metrics import StructureMatchRate

PROBES = "experiments/real_crystal_training"


def test_environment_guidance_equalises_tied_atoms_only(script):
    env = script(f"{PROBES}/environment_guidance")
    lat = torch.diag(torch.tensor([6.0, 4.0, 4.0], dtype=torch.float64)).unsqueeze(0)
    batch = torch.zeros(3, dtype=torch.long)
    x = torch.tensor([[0.0, 0.0, 0.0], [1 / 3, 0.0, 0.0], [0.62, 0.0, 0.0]], dtype=torch.float64)
    tied, alone = torch.zeros(3, dtype=torch.long), torch.arange(3)

    def spread(y: torch.Tensor) -> float:
        return float(env.spread(env.environments(y, lat, batch), tied))

    y = x
    for _ in range(20):
        y = env.equalise(y, lat, batch, tied, 0.01, 0.05)
    assert spread(y) < 0.2 * spread(x)                    # three tied atoms: their surroundings converge
    shift = ((y - x + 0.5) % 1.0 - 0.5) * torch.tensor([6.0, 4.0, 4.0], dtype=torch.float64)
    assert float(shift.norm(dim=-1).max()) <= 20 * 0.05 + 1e-9  # each move clipped to `step` Å
    # negative control: every atom in its own group has nothing to equalise
    assert torch.allclose(env.equalise(x, lat, batch, alone, 0.01, 0.05), x)


def test_noise_baseline_keeps_a_crystal_at_small_noise_and_loses_it_at_large(script):
    base = script(f"{PROBES}/noise_baseline")
    target = Structure(Lattice.cubic(5.64), ["Na", "Na", "Na", "Na", "Cl", "Cl", "Cl", "Cl"],
                       [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                        [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]])
    gen = torch.Generator().manual_seed(0)
    small = base.noised(target, 0.005, gen)
    large = base.noised(target, 0.5, gen)
    assert not (small.frac_coords == target.frac_coords).all()
    assert StructureMatchRate().outcomes([small, large], [target, target]) == ["match", "no_match"]


def test_lattice_estimate_changes_the_coordinates_only_inside_its_window(monkeypatch, script):
    import numpy as np

    from dosmatgen.generate.guidance import ClassifierFreeGuidance
    from dosmatgen.generate.specs import prior_spec
    from dosmatgen.model.config import DiffusionConfig, ModelConfig
    from dosmatgen.model.diffusion import JointDiffusion

    torch.manual_seed(0)
    diffusion = JointDiffusion(ModelConfig.tiny(), DiffusionConfig(timesteps=50, sigma_norm_samples=200)).eval()
    spec = prior_spec([3, 2], np.zeros(ModelConfig.tiny().dos_dim, dtype=np.float32), cond_atoms=(0, 1))
    state = diffusion.schedule.clean_state(spec, diffusion.model_cfg.max_z)
    state = state.replace(lattices=state.lattices + 0.3 * torch.randn(state.lattices.shape))
    guidance = ClassifierFreeGuidance(1.0)
    t = torch.full((2,), 30, dtype=torch.long)
    with torch.no_grad():
        plain = guidance.predict(diffusion, state, t)
        monkeypatch.setattr(ClassifierFreeGuidance, "predict", ClassifierFreeGuidance.predict)  # restored after
        script(f"{PROBES}/lattice_estimate").install(20, 40)
        inside = guidance.predict(diffusion, state, t)
        outside = guidance.predict(diffusion, state, torch.full((2,), 10, dtype=torch.long))
        plain_outside = diffusion.eps_cfg(state, torch.full((2,), 10, dtype=torch.long), 1.0)
    assert torch.equal(inside.eps_L, plain.eps_L) and torch.equal(inside.eps_A, plain.eps_A)
    assert not torch.allclose(inside.score_X, plain.score_X)   # the second pass read another lattice
    assert all(torch.equal(a, b) for a, b in zip(outside, plain_outside))  # negative control: outside the window


def test_ddim_geometry_lands_on_a_point_mass_at_every_eta(monkeypatch, script):
    """With the exact noise and score of a point mass (test_model_sampler's oracle) the DDIM steps
    of the probe return its lattice and coordinates, deterministically (eta 0) and with the
    ancestral noise (eta 1); negative control: an oracle whose score is half the true one (the
    deterministic path then stops short of the point) lands elsewhere."""
    from test_model_crystals import toy_records
    from test_model_sampler import Oracle

    from dosmatgen.generate import sampler
    from dosmatgen.model.batch import CrystalBatch
    from dosmatgen.model.config import DiffusionConfig, ModelConfig
    from dosmatgen.model.denoiser import DenoiserOutput
    from dosmatgen.model.diffusion import JointDiffusion

    probe = script(f"{PROBES}/ddim_geometry")
    torch.manual_seed(0)
    model = JointDiffusion(ModelConfig.tiny(), DiffusionConfig())
    spec = CrystalBatch.from_records(toy_records())

    def error(guidance) -> tuple[float, float]:
        res = sampler.sample(model, spec, guidance=guidance, steps=50, step_lr=0.0, progress=False)
        dx = (res.frac_coords - spec.frac_coords + 0.5) % 1.0 - 0.5
        return float((res.lattices - spec.lattices).abs().max()), float(dx.abs().max())

    class HalfScore(Oracle):
        def predict(self, diffusion, st, t):
            out = super().predict(diffusion, st, t)
            return DenoiserOutput(out.eps_A, 0.5 * out.score_X, out.eps_L)

    for eta in (0.0, 1.0):
        monkeypatch.setattr(sampler._Chain, "step", sampler._Chain.step)  # undone after the test
        probe.install(eta)
        lat_err, x_err = error(Oracle(spec))
        assert lat_err < 1e-3 and x_err < 1e-3, (eta, lat_err, x_err)
        if eta == 0.0:
            assert error(HalfScore(spec))[1] > 0.01
        monkeypatch.undo()
