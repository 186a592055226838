"""Pair repulsion for the reverse chain: an option of the sampler, not the paper's method.

A compact model trained on a few hundred real crystals lets two atoms of a 7-12-atom cell meet
in mid-chain (t ~ 200-600 of 1000) and never parts them again: its score has no repulsion where
its training data had no close pairs (measured in ``results/repulsion_probe/README.md``). A
guiding potential of the kind used by other diffusion samplers (e.g. RFdiffusion's potentials)
supplies it: after a reverse step, every pair of atoms of one crystal closer than ``distance``
(Å, minimum image over the 27 neighbouring cells of the current lattice) is pushed apart along
its separation, each atom by half the shortfall, which is one gradient step of the hard-sphere
penalty sum (distance - d_ij)^2 with step 1/4. Coincident atoms part along a random direction.

The sampler applies it while the step's target time ``s >= until``; with ``until > 0`` the last
steps are the model's own, so the final distances are not set by the option.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from dosmatgen.errors import ConfigError

_SHIFTS = torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=3)))


@dataclass(frozen=True)
class PairRepulsion:
    """Push apart atom pairs closer than ``distance`` Å while the reverse chain's time is >= ``until``.

    >>> PairRepulsion(distance=1.0, until=50).active(60), PairRepulsion(1.0, 50).active(10)
    (True, False)
    """

    distance: float
    until: int = 0

    def __post_init__(self) -> None:
        if not (self.distance > 0 and self.distance < float("inf")):
            raise ConfigError(f"repulsion distance must be a positive number of Å, got {self.distance}")
        if self.until < 0:
            raise ConfigError(f"repulsion 'until' must be a timestep >= 0, got {self.until}")

    def active(self, s: int) -> bool:
        return s >= self.until

    def apply(self, frac: torch.Tensor, lattices: torch.Tensor, batch: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """One push of every close pair: ``frac`` (M, 3) in [0, 1), ``lattices`` (B, 3, 3) in Å (rows
        are the cell vectors), ``batch`` (M,) the crystal of each atom. Returns new fractional
        coordinates in [0, 1).

        >>> lat = 4.0 * torch.eye(3).unsqueeze(0)
        >>> x = torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.5, 0.5, 0.5]])
        >>> y = PairRepulsion(1.0).apply(x, lat, torch.zeros(3, dtype=torch.long))
        >>> round(float(((y[1, 0] - y[0, 0]) % 1.0) * 4.0), 6), bool(torch.equal(y[2], x[2]))
        (1.0, True)
        """
        i, j = _pairs(batch)
        if i.numel() == 0:
            return frac
        lat = lattices[batch[i]]                                               # (P, 3, 3)
        d = frac[j] - frac[i]
        d = d - torch.round(d)
        images = d.unsqueeze(1) + _SHIFTS.to(frac)                             # (P, 27, 3)
        cart = torch.einsum("pkc,pcd->pkd", images, lat)
        norms = cart.norm(dim=-1)
        dist, k = norms.min(dim=1)
        vec = cart[torch.arange(len(k), device=frac.device), k]               # j - i, Å
        close = dist < self.distance
        if not bool(close.any()):
            return frac
        i, j, dist, vec, lat = i[close], j[close], dist[close], vec[close], lat[close]
        tiny = dist < 1e-6
        if bool(tiny.any()):
            rand = torch.randn((int(tiny.sum()), 3), generator=generator, device=frac.device, dtype=frac.dtype)
            vec = vec.clone()
            vec[tiny] = rand
        unit = vec / vec.norm(dim=-1, keepdim=True)
        push = (0.5 * (self.distance - dist)).unsqueeze(-1) * unit          # Å, per atom of the pair
        step_frac = torch.linalg.solve(lat.transpose(1, 2), push.unsqueeze(-1)).squeeze(-1)  # push = step @ L
        delta = torch.zeros_like(frac)
        delta.index_add_(0, j, step_frac)
        delta.index_add_(0, i, -step_frac)
        return (frac + delta) % 1.0


def _pairs(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i < j) of atoms in the same crystal."""
    same = batch.unsqueeze(0) == batch.unsqueeze(1)
    return torch.triu(same, diagonal=1).nonzero(as_tuple=True)
