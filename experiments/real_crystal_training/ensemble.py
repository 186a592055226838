"""Sample with an ensemble of independently trained diffusion models (issue 35 probe).

Every reverse step evaluates each member at the same noisy crystal and uses the mean of their
outputs (eps_A, score_X, eps_L; under CFG each member's guided output, so the mean of the guided
outputs). For the posterior type head eps_A is linear in the predicted clean-type probabilities
(A1), so the types follow the mixture of the members' element distributions. K members cost K
network passes per step. The members must share the config and the DOS standardiser (the same
training part); the sampling goes through the generation service (`regenerate`), with the demo's
options, written where `run.sh eval` writes its samples, then scored by `run.sh`'s scoring line.

    .venv/bin/python experiments/real_crystal_training/ensemble.py OUT.npz SPLIT CKPT CKPT [...]
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from dosmatgen.checkpoint import load_model
from dosmatgen.data.split import part_records
from dosmatgen.errors import ConfigError
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.generate.runner import regenerate
from dosmatgen.model.denoiser import DenoiserOutput
from dosmatgen.model.diffusion import JointDiffusion

STORE = "resources/builtin_dos.npz"
#: The demo's sampler (config/demo.yaml `generate`), CFG omega = 1, 200 steps from T, seed 0.
OPTIONS = SamplerOptions(omega=1.0, omega_geometry=0.0, steps=200, step_lr=0.0, repel_distance=1.0,
                         tie_equal_sites=0.05, batch_size=128, seed=0)


class EnsembleDiffusion(JointDiffusion):
    """Several :class:`JointDiffusion` of one config, sampled as one: :meth:`eps` is the members'
    mean; the schedule and configs are the first member's."""

    def __init__(self, members: Sequence[JointDiffusion]):
        nn.Module.__init__(self)
        if len({repr(m.config) for m in members}) != 1:
            raise ConfigError("ensemble members must share one model config")
        self.members = nn.ModuleList(members)
        self.model_cfg, self.diffusion_cfg, self.schedule = members[0].model_cfg, members[0].diffusion_cfg, members[0].schedule

    @property
    def config(self) -> dict[str, Any]:
        return {**self.members[0].config, "ensemble": len(self.members)}

    def eps(self, state, t, cond_mask=None) -> DenoiserOutput:
        outs = [m.eps(state, t, cond_mask) for m in self.members]
        return DenoiserOutput(*(torch.stack(parts).mean(0) for parts in zip(*outs)))


def main(out: str, split: str, checkpoints: list[str]) -> None:
    torch.set_num_threads(1)
    loaded = [load_model(c) for c in checkpoints]
    stds = [s for _, s, _ in loaded]
    if not all(np.allclose(s.mean, stds[0].mean) and np.allclose(s.std, stds[0].std) for s in stds):
        raise ConfigError("ensemble members were trained with different DOS standardisers")
    model = EnsembleDiffusion([m for m, _, _ in loaded]).eval()
    records = part_records(STORE, split, "test")
    regenerate(model, stds[0], records, out, OPTIONS, meta={"checkpoints": checkpoints, "command": " ".join(sys.argv)},
               progress=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
