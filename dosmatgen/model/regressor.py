"""Time-dependent site-DOS regressor g_phi(S_t, t) for classifier guidance (paper §2.3).

The same periodic invariant backbone as the denoiser, without the DOS input, and an MLP head that
predicts each atom's standardised DOS. It is trained on structures noised with the same forward
processes as the diffusion model (A1, A5, A6), so that its gradient is meaningful along the whole
reverse trajectory. ``config`` = {"model": ..., "diffusion": ..., "regressor": {"loss": "mse"|"l1"}}.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch, NoisyBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.denoiser import CSPBackbone
from dosmatgen.model.schedules import DiffusionSchedule

LOSSES: tuple[str, ...] = ("mse", "l1")


class TimeDependentDOSRegressor(nn.Module):
    """g_phi(S_t, t) -> (M, dos_dim) standardised site DOS."""

    def __init__(self, model_cfg: ModelConfig | None = None, diffusion_cfg: DiffusionConfig | None = None,
                 loss: str = "mse"):
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"regressor loss must be one of {LOSSES}, got {loss!r}")
        self.model_cfg = model_cfg or ModelConfig()
        self.diffusion_cfg = diffusion_cfg or DiffusionConfig()
        self.loss_kind = loss
        h = self.model_cfg.hidden_dim
        self.backbone = CSPBackbone(self.model_cfg, conditional=False)
        self.head = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, self.model_cfg.dos_dim))
        self.schedule = DiffusionSchedule(self.diffusion_cfg)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TimeDependentDOSRegressor":
        if not isinstance(config, dict):
            raise ConfigError(f"regressor config must be a mapping, got {type(config).__name__}")
        unknown = sorted(set(config) - {"model", "diffusion", "regressor"})
        if unknown:
            raise ConfigError(f"unknown regressor config section(s) {unknown}; known: ['diffusion', 'model', 'regressor']")
        extra = dict(config.get("regressor") or {})
        bad = sorted(set(extra) - {"loss"})
        if bad:
            raise ConfigError(f"unknown regressor config key(s) {bad}; known: ['loss']")
        return cls(ModelConfig.from_dict(config.get("model")), DiffusionConfig.from_dict(config.get("diffusion")),
                   extra.get("loss", "mse"))

    @property
    def config(self) -> dict[str, Any]:
        return {"model": self.model_cfg.to_dict(), "diffusion": self.diffusion_cfg.to_dict(),
                "regressor": {"loss": self.loss_kind}}

    def forward(self, state: NoisyBatch, t: torch.Tensor | int) -> torch.Tensor:
        t = self.schedule.per_graph(t, state.num_graphs, state.frac_coords.device)
        h = self.backbone(state.types, state.frac_coords, state.lattices, state.num_atoms, state.batch, t)
        return self.head(h)

    def predict_clean(self, batch: CrystalBatch, t: int = 1) -> torch.Tensor:
        """g_phi on a clean structure (types one-hot) at timestep ``t`` (default 1, the least noise
        the regressor was trained on)."""
        return self(self.schedule.clean_state(batch, self.model_cfg.max_z), t)

    def loss(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """MSE (or L1) between g_phi(S_t, t) and the standardised DOS of the atoms with a DOS
        (``batch.cond_mask``), t ~ U{1..T} per crystal."""
        t = self.schedule.sample_t(batch.num_graphs, batch.device, generator)
        state, _ = self.schedule.noise(batch, t, generator, self.model_cfg.max_z)
        pred = self(state, t)
        mask = batch.cond_mask
        if not bool(mask.any()):
            zero = pred.sum() * 0.0
            return {"loss": zero, "mae": zero.detach()}
        diff = pred[mask] - batch.dos[mask]
        value = (diff ** 2).mean() if self.loss_kind == "mse" else diff.abs().mean()
        return {"loss": value, "mae": diff.abs().mean().detach()}
