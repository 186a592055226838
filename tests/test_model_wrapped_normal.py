"""Wrapped normal (A5, A9) and the noise schedules (A1-A7)."""

from __future__ import annotations

import math

import pytest
import torch

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.schedules import DiffusionSchedule, cosine_beta_schedule, geometric_sigmas
from dosmatgen.model.wrapped_normal import (estimate_score_norm, score_norm_quadrature, wrapped_normal_log_prob,
                                            wrapped_normal_score)
from test_model_crystals import _one_thread, toy_records  # noqa: F401


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.2, 0.5, 0.9])
def test_score_is_the_gradient_of_the_log_density(sigma):
    x = torch.linspace(-1.7, 2.3, 401, dtype=torch.float64).requires_grad_(True)
    logp = wrapped_normal_log_prob(x, sigma)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    assert torch.allclose(wrapped_normal_score(x.detach(), sigma), grad, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0])
def test_density_is_normalised_and_periodic(sigma):
    x = torch.linspace(0, 1, 20001, dtype=torch.float64)
    p = wrapped_normal_log_prob(x, sigma).exp()
    assert abs(float(torch.trapezoid(p, x)) - 1.0) < 1e-6
    y = torch.rand(50, dtype=torch.float64)
    assert torch.allclose(wrapped_normal_log_prob(y, sigma), wrapped_normal_log_prob(y + 3.0, sigma))
    assert torch.allclose(wrapped_normal_score(y, sigma), wrapped_normal_score(y - 2.0, sigma))


def test_narrow_wrapped_normal_is_gaussian_and_wide_one_is_uniform():
    x = torch.tensor([-0.02, 0.013], dtype=torch.float64)
    assert torch.allclose(wrapped_normal_score(x, 0.01), -x / 0.01 ** 2)
    wide = wrapped_normal_log_prob(torch.linspace(0, 1, 11, dtype=torch.float64), 1.0).exp()
    assert torch.allclose(wide, torch.ones_like(wide), atol=1e-5)


def test_lambda_estimate_is_stable_across_seeds_and_matches_quadrature():
    sigmas = geometric_sigmas(1000, 0.005, 0.5)[::37]
    a = estimate_score_norm(sigmas, 5000, seed=0)
    b = estimate_score_norm(sigmas, 5000, seed=1)
    exact = score_norm_quadrature(sigmas)
    assert float(((a / b) - 1).abs().max()) < 0.01
    assert float(((a / exact) - 1).abs().max()) < 0.01
    # narrow: E[s^2] = 1/sigma^2 (Gaussian); wide: far below it (the density flattens)
    assert abs(float(a[0]) * float(sigmas[0]) ** 2 - 1) < 0.01
    assert float(a[-1]) * float(sigmas[-1]) ** 2 < 0.5


def test_cosine_and_geometric_schedules():
    betas = cosine_beta_schedule(1000)
    assert betas.shape == (1000,) and float(betas.min()) >= 1e-4 and float(betas.max()) <= 0.9999
    abar = torch.cumprod(1 - betas, 0)
    assert bool((abar[1:] < abar[:-1]).all()) and float(abar[-1]) < 1e-6
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert abs(float(abar[499]) - f(500) / f(0)) < 1e-3
    sig = geometric_sigmas(1000, 0.005, 0.5)
    assert abs(float(sig[0]) - 0.005) < 1e-12 and abs(float(sig[-1]) - 0.5) < 1e-12
    ratios = sig[1:] / sig[:-1]
    assert float(ratios.max() - ratios.min()) < 1e-9


def test_schedule_tables_and_noise():
    s = DiffusionSchedule(DiffusionConfig(timesteps=100, sigma_norm_samples=2000))
    assert s.betas.shape == (101,) and float(s.alphas_cumprod[0]) == 1.0 and float(s.sigma_x[0]) == 0.0
    assert abs(float(s.sigma_x[1]) - 0.005) < 1e-7 and abs(float(s.sigma_x[100]) - 0.5) < 1e-6
    b = CrystalBatch.from_records(toy_records() * 8)
    gen = torch.Generator().manual_seed(0)
    t = torch.full((b.num_graphs,), 100)
    st, (eps_a, tar_x, eps_l) = s.noise(b, t, gen)
    assert bool((st.frac_coords >= 0).all() and (st.frac_coords < 1).all())
    assert st.types.shape == (b.num_nodes, 100) and eps_l.shape == (b.num_graphs, 3, 3)
    # the normalised score target has unit second moment at every t (that is what lambda_t does)
    for tt in (1, 30, 100):
        t = torch.full((b.num_graphs,), tt)
        _, (_, tar_x, _) = s.noise(b, t, gen)
        assert 0.8 < float((tar_x ** 2).mean()) < 1.2
    # tiny t: almost no noise
    st1, _ = s.noise(b, torch.ones(b.num_graphs, dtype=torch.long), gen)
    d = (st1.frac_coords - b.frac_coords + 0.5) % 1.0 - 0.5
    assert float(d.abs().max()) < 0.05
    assert torch.allclose(st1.lattices, b.lattices, atol=0.1)


def test_config_round_trip_and_errors():
    d = DiffusionConfig().to_dict()
    assert DiffusionConfig.from_dict(d) == DiffusionConfig()
    assert DiffusionConfig.from_dict({"beta_min": "1e-4"}).beta_min == 1e-4  # YAML writes 1e-4 as a string
    assert ModelConfig.from_dict(ModelConfig.paper().to_dict()) == ModelConfig.paper()
    with pytest.raises(ConfigError, match="unknown diffusion config key"):
        DiffusionConfig.from_dict({"timestep": 10})
    with pytest.raises(ConfigError, match="drop_mode"):
        DiffusionConfig(drop_mode="never")
    with pytest.raises(ConfigError, match="sigma_begin"):
        DiffusionConfig(sigma_begin=0.6)
    with pytest.raises(ConfigError, match="hidden_dim"):
        ModelConfig(hidden_dim=0)
