"""A sampling probe (issue 35): the coordinates read the model's own clean-lattice estimate.

``channel_probe.py --clamp lattice-mean`` showed that the demo model places more real crystals
when, during the chain, the lattice it reads is the target's lattice at the noised lattice's scale,
sqrt(abar_t) L_0, without the lattice noise. In generation the target's lattice is unknown, but the
model's own estimate is at hand: from eps_L of one network pass,
L0_hat = (L_t - sqrt(1 - abar_t) eps_L) / sqrt(abar_t) (A6 solved for L_0). With this probe
installed, at every step with LOW <= t <= HIGH the guidance's prediction takes a second pass on
the state whose lattice is sqrt(abar_t) L0_hat, and the coordinates' score comes from that pass;
the types and the lattice's own step keep the first pass's. Twice the network passes in the window: a probe of the mechanism, not a candidate at this cost.

Installed by wrapping :meth:`ClassifierFreeGuidance.predict` (a public class; nothing private).
"""

from __future__ import annotations

from dosmatgen.generate.guidance import ClassifierFreeGuidance
from dosmatgen.model.denoiser import DenoiserOutput


def install(low: int, high: int) -> None:
    """Make classifier-free guidance's prediction read the clean-lattice estimate for the
    coordinates at timesteps ``low <= t <= high``."""
    predict = ClassifierFreeGuidance.predict

    def estimated(self, diffusion, state, t):
        first = predict(self, diffusion, state, t)
        step = int(t.reshape(-1)[0])
        if not low <= step <= high:
            return first
        abar = diffusion.schedule.alphas_cumprod[t].to(state.lattices.dtype).view(-1, 1, 1)
        clean = (state.lattices - (1 - abar).sqrt() * first.eps_L) / abar.sqrt()
        second = predict(self, diffusion, state.replace(lattices=abar.sqrt() * clean), t)
        return DenoiserOutput(first.eps_A, second.score_X, first.eps_L)

    ClassifierFreeGuidance.predict = estimated
