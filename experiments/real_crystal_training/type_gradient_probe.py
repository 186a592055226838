"""Probe (issue 35): classifier-free guidance plus the time-dependent DOS regressor's gradient on
the atom types only, late in the reverse chain; does the regressor's view of the DOS resolve the
period where CFG alone picks a group homologue?

The guided type noise is eps_cfg - sqrt(1 - abar_t) * scale * d/dA_t [-||g_phi(S_t, t) - y||^2]
(paper Eq. 2 applied to A alone) for t <= UNTIL; coordinates and lattice keep CFG. Runs
``dosmatgen evaluate regenerate`` in-process with its guidance swapped; everything else (flags,
files, the chunk cache) is the CLI's.

    TYPE_GRAD_SCALE=0.1 TYPE_GRAD_UNTIL=1000 .venv/bin/python experiments/real_crystal_training/type_gradient_probe.py \\
        REGRESSOR.pt evaluate regenerate ... --out X.npz
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from dosmatgen import cli
from dosmatgen.checkpoint import load_model
from dosmatgen.generate import runner
from dosmatgen.generate.guidance import ClassifierFreeGuidance, ClassifierGuidance
from dosmatgen.model.denoiser import DenoiserOutput


class CFGWithTypeGradient:
    def __init__(self, cfg: ClassifierFreeGuidance, regressor: Any, scale: float, until: int):
        self.cfg, self.grad, self.scale, self.until = cfg, ClassifierGuidance(regressor, scale), scale, until

    def predict(self, diffusion: Any, state: Any, t: torch.Tensor) -> DenoiserOutput:
        out = self.cfg.predict(diffusion, state, t)
        gate = (t <= self.until).to(out.eps_A.dtype)
        if not bool(gate.any()):
            return out
        grad_a, _, _, _ = self.grad.log_likelihood_grad(state, t)
        s1 = (1 - diffusion.schedule.alphas_cumprod[t]).sqrt() * gate
        return DenoiserOutput(out.eps_A - (s1[state.batch].unsqueeze(-1) * self.scale) * grad_a, out.score_X, out.eps_L)


def main(argv: list[str]) -> int:
    regressor, _, meta = load_model(argv[0], torch.device("cpu"))
    assert meta["kind"] == "regressor", meta["kind"]
    scale, until = float(os.environ["TYPE_GRAD_SCALE"]), int(os.environ.get("TYPE_GRAD_UNTIL", "1000"))
    plain = runner.build_guidance
    runner.build_guidance = lambda options, reg=None: CFGWithTypeGradient(plain(options, reg), regressor, scale, until)
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
