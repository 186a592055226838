"""JointDiffusion: config contract, loss (A8-A11), condition dropping, classifier-free guidance, overfitting."""

from __future__ import annotations

import pytest
import torch

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch, NoisyBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.diffusion import JointDiffusion, drop_condition
from dosmatgen.model.factory import build_model
from test_model_crystals import _one_thread, toy_records, trained_diffusion  # noqa: F401

SMALL = {"model": ModelConfig.tiny().to_dict(), "diffusion": {"timesteps": 50, "sigma_norm_samples": 500}}


def test_factory_contract_and_config_round_trip():
    m = build_model("diffusion", SMALL)
    assert isinstance(m, JointDiffusion)
    cfg = m.config
    assert cfg["model"]["hidden_dim"] == 32 and cfg["diffusion"]["timesteps"] == 50
    m2 = JointDiffusion.from_config(cfg)
    assert m2.config == cfg
    m2.load_state_dict(m.state_dict())  # same architecture, schedule buffers not in the state dict
    assert not any(k.startswith("schedule.") for k in m.state_dict())
    with pytest.raises(ConfigError, match="unknown diffusion model config section"):
        JointDiffusion.from_config({"model": {}, "optim": {}})
    with pytest.raises(ConfigError, match="unknown model config key"):
        JointDiffusion.from_config({"model": {"hidden": 3}})


def test_loss_keys_gradients_and_determinism():
    m = JointDiffusion.from_config(SMALL)
    b = CrystalBatch.from_records(toy_records())
    out = m.loss(b, torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "loss_A", "loss_X", "loss_L"}
    assert torch.isfinite(out["loss"])
    expected = 20 * out["loss_A"] + out["loss_X"] + out["loss_L"]
    assert torch.allclose(out["loss"].detach(), expected)
    out["loss"].backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    again = m.loss(b, torch.Generator().manual_seed(0))
    assert again["loss"].item() == out["loss"].detach().item()


def test_loss_weights_come_from_the_config():
    cfg = dict(SMALL, diffusion=dict(SMALL["diffusion"], lambda_A=0.0, lambda_X=2.0, lambda_L=0.0))
    m = JointDiffusion.from_config(cfg)
    out = m.loss(CrystalBatch.from_records(toy_records()), torch.Generator().manual_seed(1))
    assert torch.allclose(out["loss"].detach(), 2 * out["loss_X"])


def _drop_stats(mode: str, draws: int = 400):
    b = CrystalBatch.from_records(toy_records() * 4)
    cfg = DiffusionConfig(timesteps=10, sigma_norm_samples=200, drop_mode=mode, p_uncond=0.2, p_atom_mask=0.3)
    g = torch.Generator().manual_seed(0)
    return b, [drop_condition(b.cond_mask, b.batch, b.num_graphs, cfg, g) for _ in range(draws)]


def test_drop_mode_batch_drops_everything_or_nothing():
    b, masks = _drop_stats("batch")
    states = [int(m.sum()) for m in masks]
    assert set(states) == {0, b.num_nodes}
    rate = sum(s == 0 for s in states) / len(states)
    assert 0.13 < rate < 0.27


def test_drop_mode_atom_is_independent_per_atom():
    b, masks = _drop_stats("atom")
    kept = torch.stack(masks).float().mean()
    assert 0.77 < float(kept) < 0.83
    assert any(0 < int(m.sum()) < b.num_nodes for m in masks)


def test_drop_mode_structure_drops_crystals_and_masks_atoms():
    b, masks = _drop_stats("structure")
    per_graph = torch.stack([torch.zeros(b.num_graphs).index_add(0, b.batch, m.float()) for m in masks])
    full = b.num_atoms.float()
    dropped = (per_graph == 0).float().mean()
    partial = ((per_graph > 0) & (per_graph < full)).float().mean()
    assert 0.15 < float(dropped) < 0.25  # p_uncond
    assert float(partial) > 0.1  # masked crystals exist ...
    assert float(partial) < 0.8 * 0.3  # ... among the p_atom_mask share of the kept ones
    # atoms without DOS are never conditioned
    nodos = toy_records(["CsCl"], with_dos=False)
    b2 = CrystalBatch.from_records(toy_records(["NaCl"]) + nodos)
    cfg = DiffusionConfig(timesteps=10, sigma_norm_samples=200, p_uncond=0.0, p_atom_mask=1.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        m = drop_condition(b2.cond_mask, b2.batch, b2.num_graphs, cfg, g)
        assert not bool(m[2:].any()) and bool(m[:2].any())  # partial masks keep >= 1 atom


def test_eps_scales_the_coordinate_score():
    m = JointDiffusion.from_config(SMALL)
    st = NoisyBatch.from_clean(CrystalBatch.from_records(toy_records()))
    t = torch.arange(1, 9) * 5
    raw, eps = m.raw(st, t), m.eps(st, t)
    scale = m.schedule.score_norm[t][st.batch].sqrt().unsqueeze(-1)
    assert torch.allclose(eps.score_X, raw.score_X * scale)
    assert torch.equal(eps.eps_A, raw.eps_A) and torch.equal(eps.eps_L, raw.eps_L)


def test_cfg_is_one_batched_pass_combining_conditional_and_unconditional():
    torch.manual_seed(0)
    m = JointDiffusion.from_config(SMALL)
    with torch.no_grad():
        m.net.backbone.null_condition.normal_()
    b = CrystalBatch.from_records(toy_records(), cond_mask=[[0]] * 4 + [None] * 4)
    st = NoisyBatch.from_clean(b)
    t = torch.arange(1, 9) * 6
    with torch.no_grad():
        cond = m.eps(st, t)
        unc = m.eps(st, t, torch.zeros_like(st.cond_mask))
        zero = m.eps_cfg(st, t, omega=0.0)
        for a, c in zip(zero, cond):  # omega = 0 is the conditional model
            assert torch.allclose(a, c, atol=1e-6)
        for omega in (1.0, 2.5):
            got = m.eps_cfg(st, t, omega=omega)
            for g, c, u in zip(got, cond, unc):
                assert torch.allclose(g, (1 + omega) * c - omega * u, atol=1e-4)
        assert not torch.allclose(cond.eps_A, unc.eps_A)

    calls = []
    hook = m.net.backbone.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    with torch.no_grad():
        m.eps_cfg(st, t, omega=1.0)
    hook.remove()
    assert calls == [2 * b.num_nodes]


def test_overfitting_eight_crystals_cuts_the_loss_tenfold():
    model, before, after = trained_diffusion()
    assert before / after >= 10.0, (before, after)
