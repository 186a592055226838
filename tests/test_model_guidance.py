"""Time-dependent DOS regressor and the two guidance strategies (paper §2.3, §2.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch, NoisyBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.diffusion import JointDiffusion
from dosmatgen.model.factory import build_model
from dosmatgen.generate.guidance import ClassifierFreeGuidance, ClassifierGuidance
from dosmatgen.model.regressor import TimeDependentDOSRegressor
from dosmatgen.generate.sampler import sample
from test_model_crystals import _one_thread, toy_dos, toy_records, trained_diffusion, trained_regressor  # noqa: F401

SMALL_DIFF = {"timesteps": 50, "sigma_norm_samples": 500}


def _small_pair():
    torch.manual_seed(0)
    reg = TimeDependentDOSRegressor(ModelConfig.tiny(), DiffusionConfig(**SMALL_DIFF)).double()
    diff = JointDiffusion(ModelConfig.tiny(), DiffusionConfig(**SMALL_DIFF)).double()
    b = CrystalBatch.from_records(toy_records(["NaCl", "SrTiO3"]), cond_mask=[[0], [1, 2]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    st, _ = diff.schedule.noise(b, torch.tensor([10, 30]), gen)
    st = st.replace(types=st.types.double(), lattices=st.lattices.double())
    return reg, diff, st, torch.tensor([10, 30])


def test_regressor_factory_contract_and_losses():
    cfg = {"model": ModelConfig.tiny().to_dict(), "diffusion": SMALL_DIFF, "regressor": {"loss": "l1"}}
    reg = build_model("regressor", cfg)
    assert isinstance(reg, TimeDependentDOSRegressor) and reg.config["regressor"] == {"loss": "l1"}
    assert TimeDependentDOSRegressor.from_config(reg.config).config == reg.config
    b = CrystalBatch.from_records(toy_records())
    out = reg.loss(b, torch.Generator().manual_seed(0))
    assert set(out) >= {"loss", "mae"} and torch.allclose(out["loss"].detach(), out["mae"])  # L1
    out["loss"].backward()
    nodos = CrystalBatch.from_records(toy_records(["CsCl"], with_dos=False))
    assert reg.loss(nodos)["loss"].item() == 0.0
    with pytest.raises(ConfigError, match="loss"):
        TimeDependentDOSRegressor.from_config({"regressor": {"loss": "huber"}})
    with pytest.raises(ConfigError, match="unknown regressor config key"):
        TimeDependentDOSRegressor.from_config({"regressor": {"los": "l1"}})


def test_regressor_learns_the_toy_dos():
    reg, before, after = trained_regressor()
    assert after < 0.5 * before, (before, after)
    b = CrystalBatch.from_records(toy_records())
    with torch.no_grad():
        pred = reg.predict_clean(b)
    mse = float(((pred - b.dos) ** 2).mean())
    assert mse < 0.1, mse


def test_classifier_gradient_matches_finite_differences():
    reg, diff, st, t = _small_pair()
    guide = ClassifierGuidance(reg, scale=1.0)
    ga, gx, gl, err = guide.log_likelihood_grad(st, t)

    def loglik(s):
        with torch.no_grad():
            pred = reg(s, t)
        return -float((((pred - s.dos) ** 2).sum(-1) * s.cond_mask).sum())

    h = 1e-6
    for name, grad, idx in (("types", ga, (1, 16)), ("frac_coords", gx, (3, 2)), ("lattices", gl, (1, 0, 2))):
        base = getattr(st, name)
        plus, minus = base.clone(), base.clone()
        plus[idx] += h
        minus[idx] -= h
        fd = (loglik(st.replace(**{name: plus})) - loglik(st.replace(**{name: minus}))) / (2 * h)
        assert abs(fd - float(grad[idx])) < 1e-4 * max(1.0, abs(fd)), (name, fd, float(grad[idx]))
    assert err.shape == (2,) and bool((err > 0).all())


def test_classifier_guidance_adds_the_gradient_with_the_right_signs():
    reg, diff, st, t = _small_pair()
    base = diff.eps(st, t, torch.zeros_like(st.cond_mask))
    zero = ClassifierGuidance(reg, scale=0.0).predict(diff, st, t)
    for a, b in zip(zero, base):  # scale 0: the unconditional model
        assert torch.allclose(a, b)
    scale = 0.3
    got = ClassifierGuidance(reg, scale=scale).predict(diff, st, t)
    ga, gx, gl, _ = ClassifierGuidance(reg, 1.0).log_likelihood_grad(st, t)
    s1 = (1 - diff.schedule.alphas_cumprod[t]).sqrt()
    assert torch.allclose(got.eps_A, base.eps_A - scale * s1[st.batch, None] * ga)
    assert torch.allclose(got.eps_L, base.eps_L - scale * s1[:, None, None] * gl)
    assert torch.allclose(got.score_X, base.score_X + scale * gx)


def test_classifier_free_guidance_strategy():
    reg, diff, st, t = _small_pair()
    with torch.no_grad():
        diff.net.backbone.null_condition.normal_()
        for omega in (0.0, 1.0):
            got = ClassifierFreeGuidance(omega).predict(diff, st, t)
            for a, b in zip(got, diff.eps_cfg(st, t, omega)):
                assert torch.allclose(a, b)
        unc = ClassifierFreeGuidance(-1.0).predict(diff, st, t)
        for a, b in zip(unc, diff.eps(st, t, torch.zeros_like(st.cond_mask))):
            assert torch.allclose(a, b)


def test_geometry_guidance_weight_splits_the_channels():
    """omega_geometry = 0: the types follow CFG at omega, coordinates and lattice the conditional
    model; None is the paper's CFG on all three; -1/-1 is the unconditional model."""
    reg, diff, st, t = _small_pair()
    with torch.no_grad():
        diff.net.backbone.null_condition.normal_()
        cond, cfg = diff.eps(st, t), diff.eps_cfg(st, t, 1.0)
        split = ClassifierFreeGuidance(1.0, omega_geometry=0.0).predict(diff, st, t)
        assert torch.allclose(split.eps_A, cfg.eps_A)
        assert torch.allclose(split.score_X, cond.score_X) and torch.allclose(split.eps_L, cond.eps_L)
        # negative control: the paper's CFG moves the geometry away from the conditional model
        assert not torch.allclose(cfg.score_X, cond.score_X) and not torch.allclose(cfg.eps_L, cond.eps_L)
        for a, b in zip(ClassifierFreeGuidance(1.0, omega_geometry=None).predict(diff, st, t), cfg):
            assert torch.allclose(a, b)
        unc = diff.eps(st, t, torch.zeros_like(st.cond_mask))
        for a, b in zip(ClassifierFreeGuidance(-1.0, omega_geometry=-1.0).predict(diff, st, t), unc):
            assert torch.allclose(a, b)
    assert repr(ClassifierFreeGuidance(1.0)) == "ClassifierFreeGuidance(omega=1.0)"  # chunk digests unchanged


def test_classifier_guidance_moves_the_predicted_dos_toward_the_target():
    """Toy: the regressor knows each training element's DOS; asking atom 0 of 4-atom cells for the
    DOS of Ti must bring the regressor's prediction on the generated crystals closer to it."""
    diff, _, _ = trained_diffusion()
    reg, _, _ = trained_regressor()
    n = 16
    target = np.stack([toy_dos(22)] + [np.zeros(400, np.float32)] * 3)
    spec = CrystalBatch.for_generation([4] * n, dos=[target] * n, cond_mask=[[0]] * n)

    def error(res):
        with torch.no_grad():
            pred = reg.predict_clean(res)
        return float(((pred - res.dos) ** 2).mean(-1)[res.cond_mask].mean())

    plain = sample(diff, spec, guidance=ClassifierGuidance(reg, 0.0), steps=100, seed=0, progress=False)
    guided = sample(diff, spec, guidance=ClassifierGuidance(reg, 0.03), steps=100, seed=0, progress=False)
    e_plain, e_guided = error(plain), error(guided)
    assert e_guided < 0.7 * e_plain, (e_plain, e_guided)
    ti_plain = int((plain.atom_types[spec.cond_mask] == 22).sum())
    ti_guided = int((guided.atom_types[spec.cond_mask] == 22).sum())
    assert ti_guided > ti_plain
