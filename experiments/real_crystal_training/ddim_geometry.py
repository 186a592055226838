"""A sampling probe (issue 35): deterministic-leaning geometry steps (DDIM's eta) in place of the
ancestral ones, with the coordinates' placement read by ``csp_probe.py``.

The demo's geometry temperature scales the predictor's noise but keeps the ancestral mean, which
contracts a chain run without noise (temperature 0 collapsed cells, session 8). DDIM (Song et al.
2021) moves the mean instead: with eta = 1 it is the ancestral step, with eta = 0 the
deterministic path that keeps the marginals. Per reverse step t -> s, from one network pass:

- lattice (A6 solved for L_0): L0 = (L_t - sqrt(1 - abar_t) eps_L) / sqrt(abar_t),
  L_s = sqrt(abar_s) L0 + sqrt(1 - abar_s - c^2) eps_L + c z,
  c = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s);
- coordinates (the variance-exploding process of A5, eps = -sigma_t score):
  X0 = X_t + sigma_t^2 score, X_s = X0 - sqrt(sigma_s^2 - c^2) sigma_t score + c z (mod 1),
  c = eta sigma_s sqrt((sigma_t^2 - sigma_s^2) / sigma_t^2);

at eta = 1 both are the sampler's own predictor steps at geometry temperature 1 (eta replaces
the recipe's geometry temperature, which these steps do not read). The types' step, the tie, the repulsion
and everything else are the sampler's. Installed by wrapping the sampler's private chain step
(there is no public hook); the corrector must be off (the demo's recipe).

    ETA=0.5 .venv/bin/python experiments/real_crystal_training/ddim_geometry.py CHECKPOINT SPLIT OUT.json [csp_probe flags]
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import torch

from dosmatgen.generate import sampler
from dosmatgen.io import atomic_save_json


def install(eta: float) -> None:
    """Replace the predictor's lattice and coordinate steps by DDIM steps with this ``eta``."""
    step = sampler._Chain.step

    def ddim_step(self, state, t, s, guidance, step_lr, predictor_input, repulsion):
        if step_lr > 0:
            raise SystemExit("ddim_geometry: the corrector must be off (--step-lr 0)")
        seen = []

        class Recorded:  # the step's one network pass, kept for the geometry below
            def predict(self, diffusion, st, tt):
                seen.append(guidance.predict(diffusion, st, tt))
                return seen[-1]

        new = step(self, state, t, s, Recorded(), step_lr, predictor_input, None)
        pred = seen[-1]
        sig_t, sig_s, ab_t, ab_s = self.sigma[t], self.sigma[s], self.abar[t], self.abar[s]
        l0 = (state.lattices - (1 - ab_t).sqrt() * pred.eps_L) / ab_t.sqrt()
        c_l = eta * ((1 - ab_s) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_s).sqrt()
        lat = ab_s.sqrt() * l0 + (1 - ab_s - c_l ** 2).clamp(min=0).sqrt() * pred.eps_L
        x0 = state.frac_coords + sig_t ** 2 * pred.score_X
        c_x = eta * sig_s * ((sig_t ** 2 - sig_s ** 2) / sig_t ** 2).sqrt()
        x = x0 - (sig_s ** 2 - c_x ** 2).clamp(min=0).sqrt() * sig_t * pred.score_X
        if s > 0:
            x = x + c_x * self.randn(tuple(x.shape))
            lat = lat + c_l * self.randn(tuple(lat.shape))
        x = x % 1.0
        if repulsion is not None and repulsion.active(s):
            x = repulsion.apply(x, lat * self.lattice_factor, self.spec.batch, self.gen)
        return new.replace(frac_coords=x, lattices=lat)

    sampler._Chain.step = ddim_step


def main() -> None:
    """``csp_probe.py`` with the DDIM steps installed; its result file records ``ddim_eta``."""
    eta = float(os.environ["ETA"])
    install(eta)
    probe = Path(__file__).with_name("csp_probe.py")
    sys.argv = [str(probe), *sys.argv[1:]]
    runpy.run_path(str(probe), run_name="__main__")
    out = Path(sys.argv[3])
    atomic_save_json(out, {**json.loads(out.read_text()), "ddim_eta": eta})


if __name__ == "__main__":
    main()
