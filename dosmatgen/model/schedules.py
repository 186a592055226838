"""Noise schedules and the forward processes q(S_t | S_0) (paper Appendix A).

- Lattice L and types A: DDPM with a cosine beta schedule (Eqs. A1, A6), epsilon targets.
- Fractional coordinates X: wrapped normal with geometric sigma_t (A5), score target normalised
  by sqrt(lambda_t) (A9), lambda_t = 1 / E||grad log q||^2 estimated by Monte Carlo.

All tables are indexed by the integer timestep t = 0..T; index 0 is the clean data
(alpha_bar_0 = 1, sigma_0 = 0).

>>> from dosmatgen.model.config import DiffusionConfig
>>> s = DiffusionSchedule(DiffusionConfig(timesteps=10, sigma_norm_samples=1000))
>>> float(s.alphas_cumprod[0]), float(s.sigma_x[0]), round(float(s.sigma_x[10]), 3)
(1.0, 0.0, 0.5)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dosmatgen.model.batch import CrystalBatch, NoisyBatch
from dosmatgen.model.config import DiffusionConfig
from dosmatgen.model.wrapped_normal import cached_score_norm, wrapped_normal_score


def cosine_beta_schedule(timesteps: int, s: float = 0.008, beta_min: float = 1e-4,
                         beta_max: float = 0.9999) -> torch.Tensor:
    """beta_1..beta_T (float64) of the cosine schedule: alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2),
    normalised to alpha_bar(0) = 1, beta_t = 1 - alpha_bar(t)/alpha_bar(t-1), clipped."""
    x = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = 1 - abar[1:] / abar[:-1]
    return betas.clamp(beta_min, beta_max)


def geometric_sigmas(timesteps: int, sigma_begin: float, sigma_end: float) -> torch.Tensor:
    """sigma_1..sigma_T (float64), sigma_t = sigma_1 (sigma_T / sigma_1)^((t-1)/(T-1)) (Eq. A5)."""
    return torch.exp(torch.linspace(math.log(sigma_begin), math.log(sigma_end), timesteps, dtype=torch.float64))


def randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


class DiffusionSchedule(nn.Module):
    """Tables of the three forward processes and the functions that noise a clean batch.

    Buffers (length T+1, non-persistent: they are rebuilt from the config): ``betas``,
    ``alphas``, ``alphas_cumprod`` (alpha_bar), ``sigma_x`` (wrapped-normal sigma_t) and
    ``score_norm`` (E[(d log q / dx)^2] = 1 / lambda_t per coordinate; 1 at t = 0).
    """

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.cfg = cfg
        T = cfg.timesteps
        betas = torch.cat([torch.zeros(1, dtype=torch.float64),
                           cosine_beta_schedule(T, cfg.cosine_s, cfg.beta_min, cfg.beta_max)])
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        if cfg.alphas_cumprod_table is not None:  # a release's own table (import of the authors' model)
            abar = torch.tensor(cfg.alphas_cumprod_table, dtype=torch.float64)
            alphas = torch.cat([torch.ones(1, dtype=torch.float64), abar[1:] / abar[:-1]])
            betas = 1 - alphas
        sig = geometric_sigmas(T, cfg.sigma_begin, cfg.sigma_end)
        if cfg.score_norm_table is not None:
            norm = torch.tensor(cfg.score_norm_table, dtype=torch.float64)
        else:
            norm = cached_score_norm(sig, cfg.sigma_norm_samples, cfg.sigma_norm_seed, cfg.wn_images)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas", alphas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)
        self.register_buffer("sigma_x", torch.cat([torch.zeros(1, dtype=torch.float64), sig]).float(),
                             persistent=False)
        self.register_buffer("score_norm", torch.cat([torch.ones(1, dtype=torch.float64), norm]).float(),
                             persistent=False)

    @property
    def timesteps(self) -> int:
        return self.cfg.timesteps

    @staticmethod
    def per_graph(t: torch.Tensor | int, num_graphs: int, device: torch.device) -> torch.Tensor:
        """(B,) long timesteps from an int or a tensor (one entry is repeated for every crystal)."""
        if isinstance(t, int):
            return torch.full((num_graphs,), t, dtype=torch.long, device=device)
        t = t.to(device=device, dtype=torch.long).reshape(-1)
        return t.expand(num_graphs) if t.numel() == 1 and num_graphs != 1 else t

    def sample_t(self, num_graphs: int, device: torch.device,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """t ~ U{1..T}, one per crystal."""
        return torch.randint(1, self.timesteps + 1, (num_graphs,), generator=generator, device=device)

    def noise_ddpm(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Eqs. A1, A6); ``t`` has one entry per
        row of ``x0``. Returns (x_t, eps)."""
        eps = randn(tuple(x0.shape), x0, generator)
        abar = self.alphas_cumprod[t].view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps, eps

    def noise_coords(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """X_t = (X_0 + sigma_t z) mod 1 (Eq. A5); ``t`` per atom. Returns (X_t, target) with
        target = grad_{X_t} log q(X_t | X_0) * sqrt(lambda_t), the unit-scale quantity the
        network predicts (so that the plain MSE is the lambda_t-weighted loss A9)."""
        z = randn(tuple(x0.shape), x0, generator)
        sigma = self.sigma_x[t].unsqueeze(-1).to(x0.dtype)
        disp = sigma * z
        score = wrapped_normal_score(disp, sigma, self.cfg.wn_images)
        target = score / self.score_norm[t].unsqueeze(-1).sqrt().to(x0.dtype)
        return (x0 + disp) % 1.0, target

    def lattice_factor(self, num_atoms: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, 1, 1): the diffused lattice channel is L / factor (``DiffusionConfig.lattice_scale``:
        1 for ``"none"``, N^(1/3) for ``"atoms"``)."""
        n = num_atoms.to(dtype).view(-1, 1, 1)
        return n.pow(1.0 / 3.0) if self.cfg.lattice_scale == "atoms" else torch.ones_like(n)

    def clean_state(self, batch: CrystalBatch, max_z: int = 100) -> NoisyBatch:
        """S_0 of a clean batch as the networks see it: one-hot types, and the lattice as the
        diffused channel (L / :meth:`lattice_factor`)."""
        clean = NoisyBatch.from_clean(batch, max_z)
        return clean.replace(lattices=clean.lattices / self.lattice_factor(batch.num_atoms, clean.lattices.dtype))

    def noise(self, batch: CrystalBatch, t: torch.Tensor, generator: torch.Generator | None = None,
              max_z: int = 100) -> tuple[NoisyBatch, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Noise a clean batch to per-crystal timesteps ``t`` (B,). Returns S_t and the targets
        (eps_A (M, Z), normalised score_X (M, 3), eps_L (B, 3, 3)); S_t's lattice is the diffused
        channel (:meth:`clean_state`)."""
        clean = self.clean_state(batch, max_z)
        t_atom = t[batch.batch]
        l_t, eps_l = self.noise_ddpm(clean.lattices, t, generator)
        x_t, tar_x = self.noise_coords(batch.frac_coords, t_atom, generator)
        a_t, eps_a = self.noise_ddpm(clean.types, t_atom, generator)
        return clean.replace(types=a_t, frac_coords=x_t, lattices=l_t), (eps_a, tar_x, eps_l)
