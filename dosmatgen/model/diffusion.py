"""Joint diffusion over types A, fractional coordinates X and lattice L with a per-atom DOS
condition and classifier-free guidance (paper §2.2, §2.4, Appendix A).

Training (:meth:`JointDiffusion.loss`): t ~ U{1..T} per crystal, S_0 noised with the forward
processes (A1, A5, A6), the condition dropped according to ``drop_mode`` and
L = lambda_A L_A + lambda_X L_X + lambda_L L_L (A8-A11). Options outside the paper (issue 13,
``results/ablation_condition.md``): ``type_target`` ``"x0"`` / ``"posterior"`` and ``lambda_aux``
(:class:`~dosmatgen.model.config.DiffusionConfig`).

Prediction (:meth:`JointDiffusion.eps`): (eps_A, score_X, eps_L) with score_X the actual score
grad_X log p(X_t) (the network's normalised output times sqrt(E||grad log q||^2) = 1/sqrt(lambda_t)).

>>> from dosmatgen.model.config import ModelConfig, DiffusionConfig
>>> m = JointDiffusion(ModelConfig.tiny(), DiffusionConfig(timesteps=10, sigma_norm_samples=500))
>>> sorted(m.config)
['diffusion', 'model']
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch, NoisyBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.denoiser import CSPNet, DenoiserOutput
from dosmatgen.model.schedules import DiffusionSchedule


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def shift_energy(dos: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each row of ``dos`` (atoms x energy bins) moved ``shift`` bins up the energy grid (negative:
    down); the bins that enter at an edge repeat that edge's value.

    >>> shift_energy(torch.tensor([[1., 2., 3., 4.], [1., 2., 3., 4.]]), torch.tensor([1, -2]))
    tensor([[1., 1., 2., 3.],
            [3., 4., 4., 4.]])
    """
    bins = torch.arange(dos.shape[-1], device=dos.device)
    index = (bins[None, :] - shift[:, None].to(dos.device)).clamp(0, dos.shape[-1] - 1)
    return dos.gather(-1, index)


def broaden_energy(dos: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each row of ``dos`` (atoms x energy bins) convolved with a normalised Gaussian of standard
    deviation ``sigma`` bins along the energy grid (sigma 0: unchanged); beyond an edge the edge's
    value repeats, so a flat row stays flat.

    >>> broaden_energy(torch.tensor([[0., 0., 1., 0., 0.], [0., 0., 1., 0., 0.]]), torch.tensor([0., 1.]))
    tensor([[0.0000, 0.0000, 1.0000, 0.0000, 0.0000],
            [0.0540, 0.2420, 0.3991, 0.2420, 0.0540]])
    """
    half = math.ceil(3 * float(sigma.max())) if sigma.numel() else 0
    if half == 0:
        return dos
    offsets = torch.arange(-half, half + 1, device=dos.device, dtype=dos.dtype)
    weights = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].to(dos).clamp_min(1e-6)) ** 2)
    weights = weights / weights.sum(-1, keepdim=True)
    padded = torch.cat([dos[:, :1].expand(-1, half), dos, dos[:, -1:].expand(-1, half)], dim=-1)
    return (padded.unfold(-1, 2 * half + 1, 1) * weights[:, None, :]).sum(-1)


def drop_condition(cond_mask: torch.Tensor, batch_index: torch.Tensor, num_graphs: int, cfg: DiffusionConfig,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The training-time condition mask (paper Eq. 3, c = empty with probability p_uncond).

    ``"batch"``: the whole batch unconditioned with p_uncond (reference code). ``"atom"``: every
    atom independently. ``"structure"``: every crystal independently; of the crystals that keep
    their condition, a fraction ``p_atom_mask`` keeps it only on a random non-empty subset of
    its conditioned atoms (keep probability u ~ U(0, 1) per crystal). Atoms that were not
    conditioned to begin with (no DOS) stay unconditioned.
    """
    device = cond_mask.device
    if cfg.drop_mode == "batch":
        if float(_rand((1,), device, generator)) < cfg.p_uncond:
            return torch.zeros_like(cond_mask)
        return cond_mask.clone()
    if cfg.drop_mode == "atom":
        return cond_mask & (_rand(tuple(cond_mask.shape), device, generator) >= cfg.p_uncond)
    # "structure"
    u = _rand((num_graphs, 3), device, generator)
    keep_graph = u[:, 0] >= cfg.p_uncond
    partial = keep_graph & (u[:, 1] < cfg.p_atom_mask)
    keep_prob = u[:, 2]
    r = _rand(tuple(cond_mask.shape), device, generator)
    keep_atom = (~partial[batch_index]) | (r < keep_prob[batch_index])
    # a partially masked crystal keeps at least one conditioned atom: the one with the lowest r
    r_cond = torch.where(cond_mask, r, torch.full_like(r, 2.0))
    first = torch.full((num_graphs,), 3.0, device=device).scatter_reduce(0, batch_index, r_cond, reduce="amin")
    keep_atom = keep_atom | (r_cond == first[batch_index])
    return cond_mask & keep_graph[batch_index] & keep_atom


class JointDiffusion(nn.Module):
    """The DOSMatGen denoiser with its forward processes; ``config`` = {"model": ..., "diffusion": ...}."""

    def __init__(self, model_cfg: ModelConfig | None = None, diffusion_cfg: DiffusionConfig | None = None):
        super().__init__()
        self.model_cfg = model_cfg or ModelConfig()
        self.diffusion_cfg = diffusion_cfg or DiffusionConfig()
        self.net = CSPNet(self.model_cfg)
        self.schedule = DiffusionSchedule(self.diffusion_cfg)
        if self.diffusion_cfg.lambda_aux > 0:
            self.aux_element_head = nn.Linear(self.model_cfg.hidden_dim, self.model_cfg.max_z)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "JointDiffusion":
        if not isinstance(config, dict):
            raise ConfigError(f"diffusion model config must be a mapping, got {type(config).__name__}")
        unknown = sorted(set(config) - {"model", "diffusion"})
        if unknown:
            raise ConfigError(f"unknown diffusion model config section(s) {unknown}; known: ['diffusion', 'model']")
        return cls(ModelConfig.from_dict(config.get("model")), DiffusionConfig.from_dict(config.get("diffusion")))

    @property
    def config(self) -> dict[str, Any]:
        return {"model": self.model_cfg.to_dict(), "diffusion": self.diffusion_cfg.to_dict()}

    @property
    def timesteps(self) -> int:
        return self.diffusion_cfg.timesteps

    def element_logits(self, types: torch.Tensor, head: torch.Tensor, t_atom: torch.Tensor) -> torch.Tensor:
        """Logits of the clean element from the type head's output (``type_target`` x0 or
        posterior). For ``"posterior"`` the exact Gaussian log-likelihood of A_t under each element,
        log N(A_t; sqrt(abar_t) e_z, (1 - abar_t) I) = sqrt(abar_t) A_t[z] / (1 - abar_t) + const
        (A1), is added to the head's output, which then plays the prior p(z | y, rest of S_t)."""
        if self.diffusion_cfg.type_target != "posterior":
            return head
        abar = self.schedule.alphas_cumprod[t_atom].unsqueeze(-1).to(types.dtype)
        return head + abar.sqrt() / (1 - abar) * types

    def eps_from_logits(self, types: torch.Tensor, logits: torch.Tensor, t_atom: torch.Tensor) -> torch.Tensor:
        """eps_A = (A_t - sqrt(abar_t) A0_hat) / sqrt(1 - abar_t) with A0_hat = softmax(logits), the
        noise that A1 implies for the predicted clean type vector."""
        abar = self.schedule.alphas_cumprod[t_atom].unsqueeze(-1).to(types.dtype)
        return (types - abar.sqrt() * torch.softmax(logits, dim=-1)) / (1 - abar).sqrt()

    def clean_type_estimate(self, types: torch.Tensor, eps_a: torch.Tensor, t_atom: torch.Tensor) -> torch.Tensor:
        """The clean type vectors that A1 implies for ``eps_a`` at A_t = ``types``,
        (A_t - sqrt(1 - abar_t) eps_A) / sqrt(abar_t), clipped at 0 and normalised to sum 1 per atom
        (a row with nothing left stays 0): what a self-conditioned denoiser reads back
        (:attr:`ModelConfig.self_condition`). For the ``"x0"`` and ``"posterior"`` heads it is the
        softmax of the element logits (to rounding); under guidance, the guided estimate."""
        abar = self.schedule.alphas_cumprod[t_atom].unsqueeze(-1).to(types.dtype)
        est = ((types - (1 - abar).sqrt() * eps_a) / abar.sqrt()).clamp(min=0)
        return est / est.sum(-1, keepdim=True).clamp(min=1e-12)

    def _forward(self, state: NoisyBatch, t: torch.Tensor, cond_mask: torch.Tensor | None
                 ) -> tuple[DenoiserOutput, torch.Tensor]:
        """(network outputs as trained, node features); the type head's output as it comes."""
        cond = state.cond_mask if cond_mask is None else cond_mask
        h = self.net.backbone(state.types, state.frac_coords, state.lattices, state.num_atoms, state.batch, t,
                              state.dos, cond, state.type_estimate)
        return self.net.heads(h, state.lattices, state.num_atoms, state.batch), h

    def raw(self, state: NoisyBatch, t: torch.Tensor | int, cond_mask: torch.Tensor | None = None) -> DenoiserOutput:
        """Network outputs with score_X normalised (times sqrt(lambda_t)), as trained; eps_A derived
        from the element logits when ``type_target`` is ``"x0"`` or ``"posterior"``."""
        t = self.schedule.per_graph(t, state.num_graphs, state.frac_coords.device)
        out, _ = self._forward(state, t, cond_mask)
        if self.diffusion_cfg.type_target != "eps":
            t_atom = t[state.batch]
            logits = self.element_logits(state.types, out.eps_A, t_atom)
            out = out._replace(eps_A=self.eps_from_logits(state.types, logits, t_atom))
        return out

    def eps(self, state: NoisyBatch, t: torch.Tensor | int, cond_mask: torch.Tensor | None = None) -> DenoiserOutput:
        """(eps_A (M, Z), score_X (M, 3), eps_L (B, 3, 3)) at S_t; ``cond_mask`` (M,) overrides
        ``state.cond_mask`` (all False: the unconditional model eps(S_t, empty))."""
        t = self.schedule.per_graph(t, state.num_graphs, state.frac_coords.device)
        out = self.raw(state, t, cond_mask)
        scale = self.schedule.score_norm[t][state.batch].sqrt().unsqueeze(-1)
        return DenoiserOutput(out.eps_A, out.score_X * scale, out.eps_L)

    def eps_cfg(self, state: NoisyBatch, t: torch.Tensor | int, omega: float,
                omega_geometry: float | None = None) -> DenoiserOutput:
        """Classifier-free guidance (paper §2.4): (1 + omega) eps(S_t, y) - omega eps(S_t, empty),
        the two passes evaluated in one batched forward.

        ``omega_geometry`` (None: ``omega``, the paper) is a separate weight for the coordinates and
        the lattice, ``omega`` then weighting the types alone; 0 leaves the geometry to the
        conditional model (results/validity_probe/: fewer overlapping atoms for a model trained
        with its real crystals weighted, no change for one without).
        """
        t = self.schedule.per_graph(t, state.num_graphs, state.frac_coords.device)
        wg = omega if omega_geometry is None else omega_geometry
        if omega == 0 and wg == 0:
            return self.eps(state, t)
        b, m = state.num_graphs, state.types.shape[0]
        both = self.eps(state.doubled(), torch.cat([t, t]))
        cond = DenoiserOutput(both.eps_A[:m], both.score_X[:m], both.eps_L[:b])
        unc = DenoiserOutput(both.eps_A[m:], both.score_X[m:], both.eps_L[b:])
        return DenoiserOutput(*((1 + w) * c - w * u for w, c, u in zip((omega, wg, wg), cond, unc)))

    def loss(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_S = lambda_A L_A + lambda_X L_X + lambda_L L_L (Eqs. A8-A11), means over elements.

        With ``type_target`` ``"x0"`` or ``"posterior"``, L_A is the cross-entropy of the element
        logits against the clean element (weight ``lambda_ce``); with ``lambda_aux > 0`` the auxiliary element
        cross-entropy of the conditioned atoms (after the condition drop) is added; with ``dos_noise > 0``
        the condition the network sees is the standardised DOS plus Gaussian noise of that size; with
        ``dos_shift > 0`` each crystal's DOS is moved by a random whole number of bins in
        [-dos_shift, dos_shift] (:func:`shift_energy`); with ``dos_broaden > 0`` each crystal's DOS is
        then broadened by a Gaussian of standard deviation drawn uniformly in [0, dos_broaden] bins
        (:func:`broaden_energy`);
        with ``ModelConfig.self_condition``, half the batches (one draw per batch) first run the
        network without an estimate and then read its :meth:`clean_type_estimate` (no gradient
        through the first pass).
        """
        cfg = self.diffusion_cfg
        t = self.schedule.sample_t(batch.num_graphs, batch.device, generator)
        state, (eps_a, tar_x, eps_l) = self.schedule.noise(batch, t, generator, self.model_cfg.max_z)
        cond = drop_condition(batch.cond_mask, batch.batch, batch.num_graphs, cfg, generator)
        if cfg.dos_noise > 0:
            noise = torch.randn(state.dos.shape, device=state.dos.device, dtype=state.dos.dtype, generator=generator)
            state = state.replace(dos=state.dos + cfg.dos_noise * noise)
        if cfg.dos_shift > 0:  # one shift per crystal, shared by its atoms
            shift = torch.randint(-cfg.dos_shift, cfg.dos_shift + 1, (batch.num_graphs,), generator=generator,
                                  device=state.dos.device)
            state = state.replace(dos=shift_energy(state.dos, shift[batch.batch]))
        if cfg.dos_broaden > 0:  # one extra broadening per crystal, shared by its atoms
            sigma = cfg.dos_broaden * _rand((batch.num_graphs,), batch.device, generator)
            state = state.replace(dos=broaden_energy(state.dos, sigma[batch.batch]))
        if self.model_cfg.self_condition and float(_rand((1,), batch.device, generator)) < 0.5:
            with torch.no_grad():  # self-conditioning: half the batches see the network's own estimate
                first = self.raw(state, t, cond)
            state = state.replace(type_estimate=self.clean_type_estimate(state.types, first.eps_A, t[batch.batch]))
        out, h = self._forward(state, t, cond)
        element = (batch.atom_types - 1).clamp(0, self.model_cfg.max_z - 1)
        if cfg.type_target != "eps":
            loss_a = F.cross_entropy(self.element_logits(state.types, out.eps_A, t[batch.batch]), element)
            weight_a = cfg.lambda_ce
        else:
            loss_a = F.mse_loss(out.eps_A, eps_a)
            weight_a = cfg.lambda_A
        loss_x = F.mse_loss(out.score_X, tar_x)
        loss_l = F.mse_loss(out.eps_L, eps_l)
        total = weight_a * loss_a + cfg.lambda_X * loss_x + cfg.lambda_L * loss_l
        terms = {"loss_A": loss_a.detach(), "loss_X": loss_x.detach(), "loss_L": loss_l.detach()}
        if cfg.lambda_aux > 0:
            logits = self.aux_element_head(h[cond])
            loss_aux = F.cross_entropy(logits, element[cond]) if logits.shape[0] else logits.sum() * 0.0
            total = total + cfg.lambda_aux * loss_aux
            terms["loss_aux"] = loss_aux.detach()
        return {"loss": total, **terms}
