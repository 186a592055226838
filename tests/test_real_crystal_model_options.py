"""Issue 35's training-side candidates: the convolutional DOS encoder, the group/period type head and
self-conditioning (ModelConfig.dos_encoder, .type_head, .self_condition); the paper's linear map, element
head and plain network stay the default."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Element

from dosmatgen.checkpoint import load_model, save_checkpoint
from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.model.config import ModelConfig
from dosmatgen.model.denoiser import ConvDOSEncoder, GroupPeriodHead, group_and_period
from dosmatgen.model.diffusion import JointDiffusion
from test_model_crystals import toy_records


def _model(**model) -> JointDiffusion:
    torch.manual_seed(0)
    return JointDiffusion.from_config({"model": {**ModelConfig.tiny().to_dict(), **model},
                                       "diffusion": {"timesteps": 50, "sigma_norm_samples": 500,
                                                     "type_target": "posterior"}})


def test_group_and_period_agree_with_pymatgen_for_every_element():
    for z in range(1, 101):
        e = Element.from_Z(z)
        assert group_and_period(z) == (e.group, e.row), e.symbol


def test_group_period_head_shares_the_group_term_between_homologues():
    head = GroupPeriodHead(hidden=4, max_z=100)
    with torch.no_grad():
        head.element.weight.zero_()
        head.element.bias.zero_()
        head.period.weight.zero_()
        head.group.weight.copy_(torch.randn(18, 4))
    logits = head(torch.randn(3, 4))
    halogens = [z - 1 for z in (9, 17, 35, 53)]
    assert torch.allclose(logits[:, halogens], logits[:, halogens[:1]].expand(-1, 4))
    # negative control: K, in Br's period but group 1, has another value
    assert not torch.allclose(logits[:, 19 - 1], logits[:, 35 - 1])
    with torch.no_grad():  # the period term separates homologues: Br and I now differ
        head.period.weight.copy_(torch.randn(7, 4))
    logits = head(torch.randn(3, 4))
    assert not torch.allclose(logits[:, 35 - 1], logits[:, 53 - 1])


def test_conv_encoder_is_nonlinear_in_the_dos_and_the_linear_one_is_not():
    torch.manual_seed(0)
    dos = torch.rand(2, 400)
    conv = ConvDOSEncoder(400, 16)
    linear = torch.nn.Linear(400, 16)
    for encoder, nonlinear in ((conv, True), (linear, False)):
        with torch.no_grad():
            zero = encoder(torch.zeros(1, 400))
            additive = encoder(dos[:1]) + encoder(dos[1:]) - zero
            assert torch.allclose(encoder(dos[:1] + dos[1:]), additive, atol=1e-5) is not nonlinear
    assert conv(dos).shape == (2, 16)


@pytest.mark.parametrize("options", [{"dos_encoder": "conv"}, {"type_head": "group_period"},
                                     {"self_condition": True}])
def test_options_train_save_and_load(tmp_path, options):
    model = _model(**options)
    batch = CrystalBatch.from_records(toy_records())
    for seed in range(4):  # self-conditioning uses its estimate in about half the batches
        model.loss(batch, generator=torch.Generator().manual_seed(seed))["loss"].backward()
    changed = {"dos_encoder": model.net.backbone.dos_projection, "type_head": model.net.type_head,
               "self_condition": getattr(model.net.backbone, "type_estimate_embedding", None)}[next(iter(options))]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in changed.parameters())
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, kind="diffusion", standardiser=None)
    again = load_model(path)[0]
    assert again.model_cfg == model.model_cfg
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_defaults_are_the_paper_and_unknown_values_are_refused():
    net = _model().net
    assert type(net.backbone.dos_projection) is torch.nn.Linear and type(net.type_head) is torch.nn.Linear
    assert not hasattr(net.backbone, "type_estimate_embedding")
    with pytest.raises(ConfigError, match="dos_encoder"):
        ModelConfig(dos_encoder="transformer")
    with pytest.raises(ConfigError, match="type_head"):
        ModelConfig(type_head="period")


def _assert_changes_the_training_condition_only(option: dict) -> None:
    """A diffusion option that perturbs the DOS condition (``dos_noise``, ``dos_shift``,
    ``dos_broaden``) changes the
    training loss of the same weights and generator and leaves sampling's network outputs as they are."""
    from dosmatgen.model.batch import NoisyBatch

    batch = CrystalBatch.from_records(toy_records())
    plain = JointDiffusion.from_config({"model": ModelConfig.tiny().to_dict(),
                                        "diffusion": {"timesteps": 50, "sigma_norm_samples": 500}})
    changed = JointDiffusion.from_config({"model": ModelConfig.tiny().to_dict(),
                                          "diffusion": {"timesteps": 50, "sigma_norm_samples": 500, **option}})
    changed.load_state_dict(plain.state_dict())
    losses = [m.loss(batch, generator=torch.Generator().manual_seed(0))["loss"] for m in (plain, changed, plain)]
    assert torch.equal(losses[0], losses[2])  # negative control: same generator, same loss
    assert not torch.equal(losses[0], losses[1])
    state = NoisyBatch.from_clean(batch)
    t = torch.full((batch.num_graphs,), 10)
    for a, b in zip(plain.eps(state, t), changed.eps(state, t)):  # sampling sees the DOS as given
        assert torch.equal(a, b)


def test_dos_noise_perturbs_the_training_condition_only():
    _assert_changes_the_training_condition_only({"dos_noise": 0.5})
    with pytest.raises(ConfigError, match="dos_noise"):
        JointDiffusion.from_config({"model": ModelConfig.tiny().to_dict(), "diffusion": {"dos_noise": -1.0}})


def test_dos_shift_moves_each_crystal_together_in_training_only():
    from dosmatgen.model.diffusion import shift_energy

    dos = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert torch.equal(shift_energy(dos, torch.zeros(3, dtype=torch.long)), dos)  # no shift, no change
    moved = shift_energy(dos, torch.tensor([2, 2, -1]))
    assert torch.equal(moved[0], torch.tensor([0., 0., 0., 1.])) and torch.equal(moved[2], torch.tensor([9., 10., 11., 11.]))
    _assert_changes_the_training_condition_only({"dos_shift": 8})
    for bad in (-1, 1.5):
        with pytest.raises(ConfigError, match="dos_shift"):
            JointDiffusion.from_config({"model": ModelConfig.tiny().to_dict(), "diffusion": {"dos_shift": bad}})


def test_dos_broaden_keeps_area_and_flat_rows_and_perturbs_training_only():
    from dosmatgen.model.diffusion import broaden_energy

    peak = torch.zeros(2, 41)
    peak[:, 20] = 1.0
    wide = broaden_energy(peak, torch.tensor([0.0, 2.0]))
    assert torch.equal(wide[0], peak[0])  # width 0: unchanged (negative control)
    assert wide[1].sum().item() == pytest.approx(1.0, abs=1e-4) and wide[1, 20] < 0.25  # area kept, peak lower
    assert torch.allclose(wide[1], wide[1].flip(0))  # symmetric about the peak
    x = torch.arange(41, dtype=torch.float32)
    assert torch.allclose(broaden_energy(torch.full((1, 41), 3.0), torch.tensor([4.0])), torch.full((1, 41), 3.0))
    mean = (wide[1] * x).sum()  # the peak stays where it was: broadening is not a shift
    assert mean.item() == pytest.approx(20.0, abs=1e-4)
    _assert_changes_the_training_condition_only({"dos_broaden": 3.0})
    with pytest.raises(ConfigError, match="dos_broaden"):
        JointDiffusion.from_config({"model": ModelConfig.tiny().to_dict(), "diffusion": {"dos_broaden": -1.0}})


def _state_and_t(model: JointDiffusion, t: int = 20):
    from dosmatgen.model.batch import NoisyBatch

    batch = CrystalBatch.from_records(toy_records())
    times = torch.full((batch.num_graphs,), t)
    state, _ = model.schedule.noise(batch, times, torch.Generator().manual_seed(0), model.model_cfg.max_z)
    return state, times


def test_clean_type_estimate_is_the_softmax_of_the_posterior_logits():
    model = _model()
    state, t = _state_and_t(model)
    with torch.no_grad():
        out = model.raw(state, t)
        head = model.net(state.types, state.frac_coords, state.lattices, state.num_atoms, state.batch, t,
                         state.dos, state.cond_mask).eps_A
    probs = torch.softmax(model.element_logits(state.types, head, t[state.batch]), dim=-1)
    estimate = model.clean_type_estimate(state.types, out.eps_A, t[state.batch])
    assert torch.allclose(estimate, probs, atol=1e-5)
    assert torch.allclose(estimate.sum(-1), torch.ones(estimate.shape[0]))
    # a known answer: eps = 0 at A_t = sqrt(abar) e_z reads back e_z
    abar = model.schedule.alphas_cumprod[5]
    onehot = torch.nn.functional.one_hot(torch.tensor([7, 2]), 100).float()
    back = model.clean_type_estimate(abar.sqrt() * onehot, torch.zeros(2, 100), torch.tensor([5, 5]))
    assert torch.allclose(back, onehot, atol=1e-6)


def test_only_a_self_conditioned_denoiser_reads_the_estimate():
    state, t = _state_and_t(_model())
    other = torch.softmax(torch.randn(state.types.shape), dim=-1)
    for options, reads in (({"self_condition": True}, True), ({}, False)):  # negative control: the paper's
        model = _model(**options)
        if reads:
            with torch.no_grad():
                model.net.backbone.type_estimate_embedding.weight.normal_()
        with torch.no_grad():
            none, given = (model.eps(state.replace(type_estimate=e), t).eps_A for e in (None, other))
        assert (not torch.equal(none, given)) is reads


def test_the_sampler_feeds_each_step_its_previous_estimate():
    from dosmatgen.generate.sampler import sample

    model = _model(self_condition=True).eval()
    seen = []
    forward = model.net.backbone.forward

    def spy(*args, **kwargs):
        estimate = args[8] if len(args) > 8 else kwargs.get("type_estimate")
        seen.append(None if estimate is None else estimate.clone())
        return forward(*args, **kwargs)

    model.net.backbone.forward = spy
    spec = CrystalBatch.from_records(toy_records())
    sample(model, spec, steps=5, step_lr=0.0, progress=None)
    assert seen[0] is None and len(seen) == 5
    for estimate in seen[1:]:
        half = estimate[: estimate.shape[0] // 2]  # CFG: conditional half first
        assert torch.allclose(half.sum(-1), torch.ones(half.shape[0]), atol=1e-4) and bool((half >= 0).all())
    plain = _model().eval()
    seen.clear()
    forward = plain.net.backbone.forward
    plain.net.backbone.forward = spy
    sample(plain, spec, steps=5, step_lr=0.0, progress=None)
    assert seen == [None] * 5  # negative control: the paper's network is never given one
