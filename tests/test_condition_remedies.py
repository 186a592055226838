"""Issue 13's condition-fidelity options: the x0 type target, the auxiliary element loss, the
condition at every layer; and the paper recipe left as it was."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch, NoisyBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.diffusion import JointDiffusion
from test_model_crystals import toy_records

TINY = ModelConfig.tiny().to_dict()


def _model(seed: int = 0, **diffusion) -> JointDiffusion:
    torch.manual_seed(seed)
    model = dict(TINY, condition_every_layer=diffusion.pop("condition_every_layer", False))
    return JointDiffusion.from_config({"model": model,
                                       "diffusion": {"timesteps": 50, "sigma_norm_samples": 500, **diffusion}})


def test_paper_recipe_is_the_default_and_the_paper_size_snapshot():
    from dosmatgen.model.factory import model_config_for_size

    d, m = DiffusionConfig(), ModelConfig.paper()
    assert (d.type_target, d.lambda_aux, d.lambda_A, m.condition_every_layer) == ("eps", 0.0, 20.0, False)
    paper = model_config_for_size("diffusion", "paper")
    # what `--profile paper` trains: the paper's size, eps-prediction, no extra heads or layers
    assert paper["model"] == {"hidden_dim": 512, "num_layers": 6, "num_freqs": 128, "time_dim": 256, "max_z": 100,
                              "dos_dim": 400, "layer_norm": True, "condition_every_layer": False,
                              "dos_encoder": "linear", "type_head": "element", "self_condition": False}
    net = JointDiffusion(ModelConfig.tiny())
    assert not hasattr(net, "aux_element_head") and not hasattr(net.net.backbone, "layer_conditions")


def test_unknown_type_target_is_refused():
    with pytest.raises(ConfigError, match="type_target"):
        DiffusionConfig(type_target="logits")
    with pytest.raises(ConfigError, match="lambda_aux"):
        DiffusionConfig(lambda_aux=-1.0)


def test_eps_from_logits_recovers_the_true_noise_for_a_confident_head():
    m = _model(type_target="x0")
    b = CrystalBatch.from_records(toy_records())
    t = torch.full((b.num_graphs,), 30)
    state, (eps_a, _, _) = m.schedule.noise(b, t, torch.Generator().manual_seed(0), m.model_cfg.max_z)
    logits = torch.full_like(state.types, -1e4).scatter(1, (b.atom_types - 1).unsqueeze(1), 1e4)
    assert torch.allclose(m.eps_from_logits(state.types, logits, t[b.batch]), eps_a, atol=1e-4)
    # negative control: a confident head on the wrong element gives another noise
    wrong = logits.roll(1, dims=1)
    assert not torch.allclose(m.eps_from_logits(state.types, wrong, t[b.batch]), eps_a, atol=1e-2)


def test_x0_loss_is_the_element_cross_entropy():
    m = _model(type_target="x0", lambda_ce=0.5)
    out = m.loss(CrystalBatch.from_records(toy_records()), torch.Generator().manual_seed(0))
    assert torch.allclose(out["loss"].detach(), 0.5 * out["loss_A"] + out["loss_X"] + out["loss_L"])
    # an untrained head is near uniform over 100 types: cross-entropy near ln(100), not an MSE near 1
    assert 3.0 < out["loss_A"].item() < 6.5


def _condition_grad(model: JointDiffusion, t: int, conditioned: bool) -> float:
    """|d loss / d W_dos| with every crystal at timestep t: the gradient the condition pathway gets."""
    b = CrystalBatch.from_records(toy_records())
    if not conditioned:
        b = dataclasses.replace(b, cond_mask=torch.zeros_like(b.cond_mask))
    model.schedule.sample_t = lambda n, device, generator=None: torch.full((n,), t, device=device)
    model.zero_grad()
    model.loss(b, torch.Generator().manual_seed(0))["loss"].backward()
    grad = model.net.backbone.dos_projection.weight.grad
    return 0.0 if grad is None else float(grad.abs().sum())


@pytest.mark.parametrize("target", ["x0", "posterior"])
def test_element_cross_entropy_reaches_the_condition_pathway_at_t_T(target):
    """At t = T the noisy types hold nothing, so only the DOS can lower the cross-entropy: its
    gradient reaches the DOS projection. Negative control: crystals without a condition."""
    m = _model(type_target=target, lambda_X=0.0, lambda_L=0.0)
    assert _condition_grad(m, 50, True) > 1e-3
    assert _condition_grad(m, 50, False) == 0.0


def test_aux_loss_reaches_the_condition_pathway_and_only_conditioned_atoms():
    m = _model(lambda_aux=1.0, lambda_A=0.0, lambda_X=0.0, lambda_L=0.0)
    out = m.loss(CrystalBatch.from_records(toy_records()), torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "loss_A", "loss_X", "loss_L", "loss_aux"}
    assert torch.allclose(out["loss"].detach(), out["loss_aux"])
    assert _condition_grad(m, 25, True) > 1e-3
    # no conditioned atom: the auxiliary term is zero and gives no gradient
    assert _condition_grad(m, 25, False) == 0.0


def test_condition_every_layer_feeds_the_dos_to_each_layer():
    m = _model(condition_every_layer=True)
    layers = m.net.backbone.layer_conditions
    assert len(layers) == ModelConfig.tiny().num_layers
    b = CrystalBatch.from_records(toy_records())
    state = NoisyBatch.from_clean(b, m.model_cfg.max_z)
    t = torch.full((b.num_graphs,), 10)
    with torch.no_grad():
        base = m.raw(state, t).eps_A
        layers[-1].weight.add_(0.5)  # only the last layer's condition map changes
        changed = m.raw(state, t).eps_A
    assert not torch.allclose(base, changed)
    assert not hasattr(_model().net.backbone, "layer_conditions")


def _train_args(**kw):
    import argparse

    from dosmatgen.commands.train import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    argv = ["--store", "s.npz", "--split", "split.json", "--out", "o"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


def test_train_type_target_flag_reaches_the_diffusion_config_only():
    from dosmatgen.commands.train import resolve_configs

    cfg, _ = resolve_configs(_train_args(kind="diffusion", size="paper", type_target="x0"))
    model = JointDiffusion.from_config(cfg)
    assert model.diffusion_cfg.type_target == "x0" and model.model_cfg.hidden_dim == 512
    cfg, _ = resolve_configs(_train_args(kind="diffusion", size="paper"))
    assert JointDiffusion.from_config(cfg).diffusion_cfg.type_target == "eps"  # the paper's, untouched
    with pytest.raises(ConfigError, match="--type-target applies to --kind diffusion only"):
        resolve_configs(_train_args(kind="regressor", type_target="x0"))


def test_train_dos_shift_flag_reaches_the_diffusion_config_only():
    from dosmatgen.commands.train import resolve_configs

    cfg, _ = resolve_configs(_train_args(kind="diffusion", dos_shift=4))
    assert JointDiffusion.from_config(cfg).diffusion_cfg.dos_shift == 4
    cfg, _ = resolve_configs(_train_args(kind="diffusion"))
    assert JointDiffusion.from_config(cfg).diffusion_cfg.dos_shift == 0  # the paper's: no shift
    with pytest.raises(ConfigError, match="--dos-shift applies to --kind diffusion only"):
        resolve_configs(_train_args(kind="surrogate", dos_shift=4))


def test_paper_profile_keeps_the_paper_type_target():
    from dosmatgen.config import DEFAULT_CONFIG, load_run_config

    assert load_run_config(DEFAULT_CONFIG.parent / "paper.yaml")["model"]["type_target"] == "eps"
    assert load_run_config(DEFAULT_CONFIG.parent / "paper.yaml")["model"]["dos_shift"] == 0  # and no DOS shift


def test_posterior_logits_follow_visible_types_and_the_head_where_types_are_noise():
    """Bayes' rule: at t = 1 the likelihood of A_t outweighs any head; at t = T it is nil."""
    m = _model(type_target="posterior", timesteps=1000)
    b = CrystalBatch.from_records(toy_records())
    n = b.num_nodes
    g = torch.Generator().manual_seed(0)
    wrong = torch.full((n, 100), -20.0).scatter(1, (b.atom_types % 100).unsqueeze(1), 20.0)  # confident, wrong
    for t, expect_head in ((1, False), (1000, True)):
        tt = torch.full((b.num_graphs,), t)
        state, _ = m.schedule.noise(b, tt, g, 100)
        logits = m.element_logits(state.types, wrong, tt[b.batch])
        picked = logits.argmax(-1) + 1
        assert bool((picked == (b.atom_types % 100) + 1).all()) == expect_head
        assert bool((picked == b.atom_types).all()) == (not expect_head)
    # negative control: the x0 target ignores A_t, so the wrong head wins at t = 1 too
    x0 = _model(type_target="x0", timesteps=1000)
    state, _ = x0.schedule.noise(b, torch.full((b.num_graphs,), 1), g, 100)
    assert not bool((x0.element_logits(state.types, wrong, torch.ones(n, dtype=torch.long)).argmax(-1) + 1
                     == b.atom_types).any())


def test_paper_profile_keeps_the_paper_sampling_recipe_snapshot():
    """Issue 35: a demo recipe may change the sampler, the paper profile may not. Snapshot of the
    sampler defaults (the paper's recipe) and of every sampler-relevant key of config/paper.yaml;
    any new option that config/paper.yaml sets, or a changed default, fails here (negative control:
    a profile that sets the repulsion option is caught)."""
    import dataclasses

    import yaml

    from dosmatgen.generate.options import SamplerOptions
    from dosmatgen.paths import REPO_ROOT

    defaults = {f.name: f.default for f in dataclasses.fields(SamplerOptions)}
    assert defaults == {"guidance": "cfg", "omega": 1.0, "omega_geometry": None, "guidance_scale": 1.0, "steps": None,
                        "step_lr": 1e-05, "start_at_T": False, "predictor_input": "corrected",
                        "repel_distance": None, "repel_until": 200, "tie_equal_sites": None, "type_temperature": 1.0,
                        "geometry_temperature": 1.0,
                        "allowed_types": None,
                        "batch_size": 100, "seed": 0}
    paper = yaml.safe_load((REPO_ROOT / "config" / "paper.yaml").read_text())

    def sampler_keys(cfg: dict) -> dict:  # what the profile sets besides the start steps and the size
        return {k: v for k, v in cfg["generate"].items() if k not in ("t0", "limit")}

    assert sampler_keys(paper) == {"guidance": ["cfg", "classifier"], "steps": 1000, "batch_size": 256}
    assert paper["model"].get("type_target", "eps") == "eps"
    studies = [s for s in paper["studies"].values() if isinstance(s, dict)]
    assert studies and not [k for s in studies for k in s if k in defaults and k != "seed"]
    changed = dict(paper, generate=dict(paper["generate"], repel_distance=0.8))
    assert sampler_keys(changed) != sampler_keys(paper)
