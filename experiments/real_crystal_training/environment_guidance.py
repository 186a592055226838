"""A geometry guidance probe (issue 35): sites with (nearly) equal target DOS, which the demo's
sampler already ties into one group (``tie_equal_sites``), are most likely symmetry-equivalent, and
symmetry-equivalent sites of a crystal have the same surroundings. After each reverse step whose
target time lies in a window, every atom is moved down the gradient of

    E = sum over tied groups g, atoms i in g of || f_i - mean_{j in g} f_j ||^2,

f_i the atom's smooth radial distribution: sum over the other atoms and periodic images within
``cutoff`` of exp(-(d - r_k)^2 / (2 w^2)) on a grid r_k (element-blind, so it works while the types
are still noise), with the current lattice held fixed: a gradient step of size ``rate``, each atom's
move clipped to ``step`` Å per reverse step. Atoms alone in their group are not moved by E
directly (only as neighbours).

Not the paper's method and not in the package: a probe, installed by wrapping the sampler chain's
step as ``channel_probe.clamp_channel`` does (tests/test_layout.py lists this use).
"""

from __future__ import annotations

import itertools

import torch

from dosmatgen.generate import sampler

_SHIFTS = torch.tensor(list(itertools.product((-2.0, -1.0, 0.0, 1.0, 2.0), repeat=3)))
GRID = torch.arange(1.0, 5.01, 0.25)  # Å
WIDTH = 0.25  # Å
CUTOFF = 5.5  # Å


def environments(frac: torch.Tensor, lat: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """(M, K) smooth radial distribution of every atom (``lat`` (B, 3, 3) in Å, rows the cell vectors).

    >>> lat = 3.0 * torch.eye(3).unsqueeze(0)
    >>> f = environments(torch.tensor([[0.0, 0.0, 0.0]]), lat, torch.zeros(1, dtype=torch.long))
    >>> int(f[0].argmax()), GRID[int(f[0].argmax())].item()   # the 6 nearest images at 3 Å
    (8, 3.0)
    """
    same = batch.unsqueeze(0) == batch.unsqueeze(1)
    i, j = same.nonzero(as_tuple=True)
    d = frac[j] - frac[i]
    d = d - torch.round(d)
    images = d.unsqueeze(1) + _SHIFTS.to(frac)                           # (P, 125, 3)
    cart = torch.einsum("pkc,pcd->pkd", images, lat[batch[i]])
    dist = (cart.square().sum(-1) + 1e-12).sqrt()                        # (P, 125)
    keep = (dist > 1e-3) & (dist < CUTOFF)
    smooth = torch.where(keep, 0.5 * (torch.cos(torch.pi * dist / CUTOFF) + 1), torch.zeros_like(dist))
    grid = GRID.to(frac)
    gauss = torch.exp(-(dist.unsqueeze(-1) - grid) ** 2 / (2 * WIDTH ** 2)) * smooth.unsqueeze(-1)
    per_pair = gauss.sum(1)                                              # (P, K)
    return torch.zeros((frac.shape[0], grid.numel()), dtype=frac.dtype, device=frac.device).index_add(0, i, per_pair)


def spread(f: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """E: the summed squared distance of each atom's environment ``f`` from its group's mean."""
    n = int(groups.max()) + 1
    size = torch.bincount(groups, minlength=n).to(f.dtype)
    mean = torch.zeros((n, f.shape[1]), dtype=f.dtype, device=f.device).index_add(0, groups, f) / size.unsqueeze(-1)
    return ((f - mean[groups]) ** 2).sum()


def equalise(frac: torch.Tensor, lat: torch.Tensor, batch: torch.Tensor, groups: torch.Tensor,
             rate: float, step: float) -> torch.Tensor:
    """One guidance move: fractional coordinates after a step ``-rate * grad E`` (Å), each atom's
    move clipped to ``step`` Å (module docstring).

    Two tied atoms of a cell related by inversion have equal surroundings: nothing moves; three tied
    atoms on a line, one off its place, move towards equal surroundings:

    >>> lat = 4.0 * torch.eye(3).unsqueeze(0)
    >>> b2, g2 = torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    >>> x = torch.tensor([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0]])
    >>> bool(torch.allclose(equalise(x, lat, b2, g2, 0.01, 0.1), x, atol=1e-5))
    True
    >>> lat = torch.diag(torch.tensor([6.0, 4.0, 4.0])).unsqueeze(0)
    >>> b3, g3 = torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    >>> x = torch.tensor([[0.0, 0.0, 0.0], [1 / 3, 0.0, 0.0], [0.62, 0.0, 0.0]])
    >>> e = lambda y: float(spread(environments(y, lat, b3), g3))
    >>> y = equalise(x, lat, b3, g3, 0.01, 0.05)
    >>> e(y) < e(x)
    True
    """
    cart = torch.einsum("mc,mcd->md", frac, lat[batch]).detach().requires_grad_(True)
    inv = torch.linalg.inv(lat)[batch]
    energy = spread(environments(torch.einsum("md,mdc->mc", cart, inv), lat, batch), groups)
    (grad,) = torch.autograd.grad(energy, cart)
    move = -rate * grad
    norm = move.norm(dim=-1, keepdim=True)
    move = move * torch.clamp(step / (norm + 1e-12), max=1.0)
    return (frac + torch.einsum("md,mdc->mc", move, inv)) % 1.0


def install(rate: float, step: float, low: int, high: int) -> None:
    """Make every reverse step t -> s of the sampler with ``low <= s <= high`` end with one
    :func:`equalise` move of the tied groups (the chain's ``tie_groups``; nothing without them)."""
    chain_step = sampler._Chain.step

    def guided_step(chain, state, t, s, *args, **kwargs):
        new = chain_step(chain, state, t, s, *args, **kwargs)
        if chain.groups is None or not (low <= s <= high):
            return new
        with torch.enable_grad():
            x = equalise(new.frac_coords, new.lattices * chain.lattice_factor, chain.spec.batch, chain.groups, rate, step)
        return new.replace(frac_coords=x.detach())

    sampler._Chain.step = guided_step
