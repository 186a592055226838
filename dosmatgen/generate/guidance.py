"""Guidance strategies used by the sampler (paper §2.3, §2.4).

Every strategy has ``predict(diffusion, state, t) -> DenoiserOutput(eps_A, score_X, eps_L)``:
noise predictions for the DDPM parts (A, L) and the actual score of the coordinates (X).

- :class:`ClassifierFreeGuidance`: (1 + omega) eps(S_t, y) - omega eps(S_t, empty) (§2.4); the two
  passes run as one batched forward. omega = 0 is the conditional model, omega = -1 the
  unconditional one.
- :class:`ClassifierGuidance`: unconditional model plus the gradient of
  log p(y | S_t) ~ -scale ||g_phi(S_t, t) - y||^2 (sum over conditioned atoms and energy bins)
  (§2.3, Eq. 2). A score s relates to a DDPM noise prediction as eps = -sqrt(1 - abar_t) s, so
  for A and L the guided noise is eps - sqrt(1 - abar_t) * grad; for X the grad is added to the score.
"""

from __future__ import annotations

from typing import Protocol

import torch

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import NoisyBatch
from dosmatgen.model.denoiser import DenoiserOutput
from dosmatgen.model.diffusion import JointDiffusion
from dosmatgen.model.regressor import TimeDependentDOSRegressor


class Guidance(Protocol):
    def predict(self, diffusion: JointDiffusion, state: NoisyBatch, t: torch.Tensor) -> DenoiserOutput:
        ...


class ClassifierFreeGuidance:
    """Classifier-free guidance with strength ``omega`` (paper: omega = 1), optionally with its own
    strength ``omega_geometry`` for coordinates and lattice (None: ``omega`` on all three, the
    paper; see :meth:`JointDiffusion.eps_cfg`).

    >>> ClassifierFreeGuidance(1.0, omega_geometry=0.0)
    ClassifierFreeGuidance(omega=1.0, omega_geometry=0.0)
    """

    def __init__(self, omega: float, omega_geometry: float | None = None):
        self.omega = float(omega)
        self.omega_geometry = None if omega_geometry is None else float(omega_geometry)

    def predict(self, diffusion: JointDiffusion, state: NoisyBatch, t: torch.Tensor) -> DenoiserOutput:
        if self.omega == -1.0 and self.omega_geometry in (None, -1.0):
            return diffusion.eps(state, t, torch.zeros_like(state.cond_mask))
        return diffusion.eps_cfg(state, t, self.omega, self.omega_geometry)

    def __repr__(self) -> str:
        extra = "" if self.omega_geometry is None else f", omega_geometry={self.omega_geometry}"
        return f"ClassifierFreeGuidance(omega={self.omega}{extra})"


class ClassifierGuidance:
    """Unconditional diffusion model steered by a time-dependent DOS regressor (paper §2.3)."""

    def __init__(self, regressor: TimeDependentDOSRegressor, scale: float = 1.0):
        self.regressor = regressor
        self.scale = float(scale)

    def log_likelihood_grad(self, state: NoisyBatch, t: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradients of -||g_phi(S_t, t) - y||^2 (conditioned atoms) w.r.t. A_t, X_t, L_t, and the
        per-crystal squared error."""
        with torch.enable_grad():
            a = state.types.detach().requires_grad_(True)
            x = state.frac_coords.detach().requires_grad_(True)
            lat = state.lattices.detach().requires_grad_(True)
            pred = self.regressor(state.replace(types=a, frac_coords=x, lattices=lat), t)
            err = ((pred - state.dos) ** 2).sum(-1) * state.cond_mask.to(pred.dtype)
            per_graph = torch.zeros(state.num_graphs, dtype=err.dtype, device=err.device).index_add(0, state.batch, err)
            grad_a, grad_x, grad_l = torch.autograd.grad(-per_graph.sum(), [a, x, lat])
        return grad_a, grad_x, grad_l, per_graph.detach()

    def predict(self, diffusion: JointDiffusion, state: NoisyBatch, t: torch.Tensor) -> DenoiserOutput:
        mine, theirs = self.regressor.diffusion_cfg.lattice_scale, diffusion.diffusion_cfg.lattice_scale
        if mine != theirs:
            raise ConfigError(f"the regressor was trained with lattice_scale {mine!r} and the diffusion model "
                              f"with {theirs!r}: they see different lattices; train them alike")
        base = diffusion.eps(state, t, torch.zeros_like(state.cond_mask))
        if self.scale == 0 or not bool(state.cond_mask.any()):
            return base
        grad_a, grad_x, grad_l, _ = self.log_likelihood_grad(state, t)
        s1 = (1 - diffusion.schedule.alphas_cumprod[t]).sqrt()  # (B,)
        eps_a = base.eps_A - (s1[state.batch].unsqueeze(-1) * self.scale) * grad_a
        eps_l = base.eps_L - (s1.view(-1, 1, 1) * self.scale) * grad_l
        score_x = base.score_X + self.scale * grad_x
        return DenoiserOutput(eps_a, score_x, eps_l)

    def __repr__(self) -> str:
        return f"ClassifierGuidance(scale={self.scale})"
