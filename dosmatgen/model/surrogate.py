"""Surrogate site-DOS model for evaluation (paper §3.1: "a separate surrogate model that predicts
atom-level DOS from input crystal structures"; docs/method.md).

A time-independent periodic graph network S -> (M, 400) standardised site DOS, trained with an L1
loss on the standardised DOS (``dosmatgen train --kind surrogate``). It is *not* the diffusion
backbone: the denoiser sees a fully connected graph with Fourier features of fractional offsets,
which suits scores on the torus, whereas a site DOS is set by the real-space neighbourhood. So the
surrogate is a small CGCNN/MatDeepLearn-style network on a radius graph with radial features
(the paper's surrogate comes from MatDeepLearn):

* graph: for each atom the ``max_neighbors`` nearest atoms (periodic images included) within
  ``cutoff`` Å (defaults 6 Å, 16 neighbours), found on the fly from fractional coordinates and
  lattice (:func:`periodic_radius_graph`);
* edge features: ``num_rbf`` Gaussians of the distance, times a cosine envelope that goes to
  zero at the cutoff;
* ``num_layers`` gated convolutions (CGCNN gate: sigmoid(W_f z) * softplus(W_s z) with
  z = [h_i, h_j, rbf_ij]), sum over neighbours divided by ``max_neighbors``, residual and
  LayerNorm;
* head: MLP on [h_i, mean of h over the crystal] -> 400 bins.

A crystal whose graph cannot be built (non-finite arrays, a lattice so flat that the cutoff sphere
needs more than ``max_images`` periodic images per axis, or one atom with more than ``max_pairs``
candidate neighbours) is a *featurisation failure*: its atoms get predictions from their
embeddings alone, are flagged in ``graph_ok`` and excluded from the training loss and from the
metrics (the paper's "failed to form a crystal graph" exclusions), and counted.

The config dict of ``from_config`` is :class:`SurrogateConfig`'s ``to_dict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dosmatgen.config_dataclass import DictConfig, require_positive_ints
from dosmatgen.errors import ConfigError, DataError


@dataclass(frozen=True)
class SurrogateConfig(DictConfig):
    """Architecture of :class:`SurrogateDOSModel` (see the module docstring)."""

    hidden_dim: int = 128
    num_layers: int = 4
    num_rbf: int = 50
    cutoff: float = 6.0
    max_neighbors: int = 16
    max_z: int = 100
    dos_dim: int = 400
    max_images: int = 8
    max_pairs: int = 2_000_000
    WHAT: ClassVar[str] = "surrogate"

    def __post_init__(self) -> None:
        require_positive_ints(self, ("hidden_dim", "num_layers", "num_rbf", "max_neighbors", "max_z", "dos_dim",
                                     "max_images", "max_pairs"), "surrogate")
        if not (isinstance(self.cutoff, (int, float)) and 0 < float(self.cutoff) < 50):
            raise ConfigError(f"surrogate config cutoff must be in (0, 50) Å, got {self.cutoff!r}")

    @classmethod
    def tiny(cls) -> "SurrogateConfig":
        """For unit tests: hidden 16, 2 layers, 8 radial functions, 4 Å cutoff."""
        return cls(hidden_dim=16, num_layers=2, num_rbf=8, cutoff=4.0, max_neighbors=8)

    @classmethod
    def compact(cls) -> "SurrogateConfig":
        """CPU size (the defaults): hidden 128, 4 layers, 6 Å cutoff, 16 neighbours (~0.56 M parameters)."""
        return cls()

    @classmethod
    def paper(cls) -> "SurrogateConfig":
        """GPU size: hidden 256, 6 layers, MatDeepLearn's graph (8 Å cutoff, 12 neighbours). The
        paper does not give its surrogate's size; this is our choice."""
        return cls(hidden_dim=256, num_layers=6, cutoff=8.0, max_neighbors=12)


@dataclass
class PeriodicGraph:
    """Directed edges i <- j (+ image shift) over a batch; ``graph_ok[b]`` False = failed crystal.

    ``src`` (E,) centre atom i, ``dst`` (E,) neighbour j, ``shift`` (E, 3) integer lattice
    translation of j; all as global atom indices of the batch. ``reasons[b]`` is None or why
    crystal b failed.
    """

    src: torch.Tensor
    dst: torch.Tensor
    shift: torch.Tensor
    graph_ok: torch.Tensor
    reasons: list[str | None]


def _crystal_edges(frac: np.ndarray, lat: np.ndarray, cutoff: float, max_neighbors: int, max_images: int,
                   max_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """Edges of one crystal or the reason it fails (see the module docstring)."""
    n = frac.shape[0]
    if not (np.all(np.isfinite(frac)) and np.all(np.isfinite(lat))):
        return "non_finite"
    volume = abs(float(np.linalg.det(lat)))
    if volume < 1e-6:
        return "degenerate_lattice"
    # interplanar spacing of each lattice plane family: h_k = V / |a_i x a_j|
    cross = np.stack([np.cross(lat[1], lat[2]), np.cross(lat[2], lat[0]), np.cross(lat[0], lat[1])])
    spacing = volume / np.maximum(np.linalg.norm(cross, axis=1), 1e-12)
    reps = np.ceil(cutoff / spacing).astype(np.int64)
    if np.any(reps > max_images):
        return "too_many_images"
    n_img = int(np.prod(2 * reps + 1))
    if n * n_img > max_pairs:
        return "too_many_pairs"
    grids = [np.arange(-r, r + 1) for r in reps]
    shifts = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float64)
    zero_shift = int(np.flatnonzero(np.all(shifts == 0, axis=1))[0])
    cart = np.mod(frac, 1.0) @ lat
    img = shifts @ lat  # (S, 3)
    targets = (cart[:, None, :] + img[None, :, :]).reshape(-1, 3)  # (N*S, 3): atom j in image s
    k = min(max_neighbors, targets.shape[0])
    block = max(1, max_pairs // targets.shape[0])  # centres per block: bounded memory for big cells
    centres, neighbours, shift_idx = [], [], []
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        dist = np.linalg.norm(targets[None, :, :] - cart[rows, None, :], axis=-1)  # (b, N*S)
        dist[np.arange(len(rows)), rows * shifts.shape[0] + zero_shift] = np.inf  # an atom is not its own neighbour
        dist[dist > cutoff] = np.inf
        if k < dist.shape[1]:
            nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
        else:
            nearest = np.tile(np.arange(dist.shape[1]), (len(rows), 1))
        keep = np.isfinite(np.take_along_axis(dist, nearest, axis=1))
        centres.append(np.repeat(rows, nearest.shape[1]).reshape(len(rows), -1)[keep])
        nb, si = np.divmod(nearest[keep], shifts.shape[0])
        neighbours.append(nb)
        shift_idx.append(si)
    return np.concatenate(centres), np.concatenate(neighbours), shifts[np.concatenate(shift_idx)]


def periodic_radius_graph(frac_coords: torch.Tensor, lattices: torch.Tensor, num_atoms: torch.Tensor,
                          cutoff: float, max_neighbors: int, max_images: int = 8,
                          max_pairs: int = 2_000_000) -> PeriodicGraph:
    """Nearest ``max_neighbors`` neighbours within ``cutoff`` Å of every atom, periodic images
    included, for a flat batch (computed in float64 NumPy; no gradient flows through the choice
    of neighbours)."""
    frac = frac_coords.detach().cpu().double().numpy()
    lats = lattices.detach().cpu().double().numpy()
    counts = num_atoms.detach().cpu().numpy()
    ptr = np.concatenate([[0], np.cumsum(counts)])
    src, dst, shift, ok, reasons = [], [], [], [], []
    for b in range(len(counts)):
        a, e = int(ptr[b]), int(ptr[b + 1])
        out = _crystal_edges(frac[a:e], lats[b], cutoff, max_neighbors, max_images, max_pairs)
        ok.append(not isinstance(out, str))
        reasons.append(out if isinstance(out, str) else None)
        if ok[-1]:
            src.append(out[0] + a)
            dst.append(out[1] + a)
            shift.append(out[2])
    dev = frac_coords.device
    if src:
        s = torch.from_numpy(np.concatenate(src)).long().to(dev)
        d = torch.from_numpy(np.concatenate(dst)).long().to(dev)
        sh = torch.from_numpy(np.concatenate(shift)).to(dev, frac_coords.dtype)
    else:
        s = d = torch.zeros(0, dtype=torch.long, device=dev)
        sh = torch.zeros((0, 3), dtype=frac_coords.dtype, device=dev)
    return PeriodicGraph(s, d, sh, torch.tensor(ok, dtype=torch.bool, device=dev), reasons)


class GaussianRBF(nn.Module):
    """``num`` Gaussians on [0, cutoff] of width equal to their spacing, times the cosine envelope
    0.5 (cos(pi d / cutoff) + 1)."""

    def __init__(self, num: int, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("centres", torch.linspace(0.0, self.cutoff, num), persistent=False)
        self.width = self.cutoff / max(num - 1, 1)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        g = torch.exp(-0.5 * ((d.unsqueeze(-1) - self.centres) / self.width) ** 2)
        env = 0.5 * (torch.cos(math.pi * d.clamp(max=self.cutoff) / self.cutoff) + 1.0)
        return g * env.unsqueeze(-1)


class GatedConv(nn.Module):
    """CGCNN-style gated convolution with residual and LayerNorm."""

    def __init__(self, hidden: int, num_rbf: int, norm_by: int):
        super().__init__()
        # W [h_i, h_j, rbf_ij] + b, split by blocks so the node parts run per atom, not per edge
        self.lin_centre = nn.Linear(hidden, 2 * hidden)
        self.lin_neighbour = nn.Linear(hidden, 2 * hidden, bias=False)
        self.lin_edge = nn.Linear(num_rbf, 2 * hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)
        self.norm_by = float(norm_by)

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, rbf: torch.Tensor) -> torch.Tensor:
        z = self.lin_centre(h)[src] + self.lin_neighbour(h)[dst] + self.lin_edge(rbf)
        gate, core = z.chunk(2, dim=-1)
        msg = torch.sigmoid(gate) * F.softplus(core)
        agg = torch.zeros_like(h).index_add_(0, src, msg) / self.norm_by
        return self.norm(h + agg)


@dataclass
class SurrogateOutput:
    """``dos`` (M, 400) standardised predictions; ``graph_ok`` (B,); ``reasons`` per crystal."""

    dos: torch.Tensor
    graph_ok: torch.Tensor
    reasons: list[str | None]


class SurrogateDOSModel(nn.Module):
    """Time-independent S -> site DOS network used only to score structures (paper §3.1)."""

    def __init__(self, cfg: SurrogateConfig | None = None):
        super().__init__()
        self.cfg = cfg or SurrogateConfig()
        h = self.cfg.hidden_dim
        self.embedding = nn.Embedding(self.cfg.max_z + 1, h)
        self.rbf = GaussianRBF(self.cfg.num_rbf, self.cfg.cutoff)
        self.layers = nn.ModuleList(GatedConv(h, self.cfg.num_rbf, self.cfg.max_neighbors)
                                    for _ in range(self.cfg.num_layers))
        self.head = nn.Sequential(nn.Linear(2 * h, 2 * h), nn.SiLU(), nn.Linear(2 * h, 2 * h), nn.SiLU(),
                                  nn.Linear(2 * h, self.cfg.dos_dim))

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> "SurrogateDOSModel":
        return cls(SurrogateConfig.from_dict(config))

    @staticmethod
    def default_config(size: str) -> dict[str, Any]:
        """Config dict of a named size: ``tiny``, ``compact`` or ``paper``."""
        maker = {"tiny": SurrogateConfig.tiny, "compact": SurrogateConfig.compact, "paper": SurrogateConfig.paper}
        if size not in maker:
            raise ConfigError(f"unknown surrogate size {size!r}; known: {sorted(maker)}")
        return maker[size]().to_dict()

    @property
    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def predict(self, batch: Any) -> SurrogateOutput:
        """Standardised site DOS of every atom of a :class:`~dosmatgen.model.batch.CrystalBatch`
        (fields ``atom_types, frac_coords, lattices, num_atoms, batch``)."""
        types = batch.atom_types
        if bool(((types < 1) | (types > self.cfg.max_z)).any()):
            raise DataError(f"surrogate: atom types outside 1..{self.cfg.max_z}")
        g = periodic_radius_graph(batch.frac_coords, batch.lattices, batch.num_atoms, self.cfg.cutoff,
                                  self.cfg.max_neighbors, self.cfg.max_images, self.cfg.max_pairs)
        dtype = self.embedding.weight.dtype
        frac = batch.frac_coords.to(dtype) % 1.0
        lat = batch.lattices.to(dtype)
        crystal = batch.batch
        vec = torch.einsum("ek,ekl->el", frac[g.dst] + g.shift.to(dtype) - frac[g.src], lat[crystal[g.src]])
        rbf = self.rbf(vec.norm(dim=-1))
        h = self.embedding(types)
        for layer in self.layers:
            h = layer(h, g.src, g.dst, rbf)
        b = int(batch.num_atoms.shape[0])
        pooled = torch.zeros((b, h.shape[1]), dtype=h.dtype, device=h.device).index_add_(0, crystal, h)
        pooled = pooled / batch.num_atoms.to(h.dtype).unsqueeze(-1)
        dos = self.head(torch.cat([h, pooled[crystal]], dim=-1))
        return SurrogateOutput(dos, g.graph_ok, g.reasons)

    def forward(self, batch: Any) -> torch.Tensor:
        """(M, dos_dim) standardised site DOS (see :meth:`predict` for the failure flags)."""
        return self.predict(batch).dos

    def loss(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L1 between predicted and true standardised DOS, mean over bins and over the atoms that
        have a DOS (``cond_mask``) in crystals whose graph could be built."""
        out = self.predict(batch)
        atom_ok = out.graph_ok[batch.batch] & batch.cond_mask
        err = (out.dos - batch.dos.to(out.dos.dtype)).abs().mean(dim=-1)
        w = atom_ok.to(err.dtype)
        loss = (err * w).sum() / w.sum().clamp(min=1.0)
        return {"loss": loss, "l1_std": loss.detach(),
                "graph_failed": (~out.graph_ok).sum().to(loss.dtype).detach()}


def predict_site_dos(model: SurrogateDOSModel, standardiser: Any, items: Sequence[tuple[Any, Any, Any]],
                     batch_size: int = 128, device: str | torch.device = "cpu",
                     progress: bool = False) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Raw site DOS (states/eV/site, ``standardiser.inverse`` applied) for
    ``(atomic_numbers, frac_coords, lattice)`` triples.

    Returns ``(predictions, reasons)``: ``predictions[i]`` is an (N_i, 400) array or ``None`` when
    the structure could not be featurised, with ``reasons[i]`` saying why (``non_finite``,
    ``degenerate_lattice``, ``unknown_element``, ``too_many_images``, ``too_many_pairs``, ...).
    """
    from tqdm.auto import tqdm

    from dosmatgen.data.schema import CrystalRecord
    from dosmatgen.model.batch import CrystalBatch

    preds: list[np.ndarray | None] = [None] * len(items)
    reasons: list[str | None] = [None] * len(items)
    recs: list[tuple[int, Any]] = []
    for i, (z, x, lat) in enumerate(items):
        z = np.asarray(z).reshape(-1)
        if z.size == 0:
            reasons[i] = "empty"
        elif np.any(z < 1) or np.any(z > model.cfg.max_z):
            reasons[i] = "unknown_element"
        else:
            try:
                recs.append((i, CrystalRecord(f"s{i}", z, np.mod(np.asarray(x, np.float64), 1.0), lat)))
            except DataError as exc:
                reasons[i] = "degenerate_lattice" if "volume" in str(exc) else "non_finite"
    model = model.to(device).eval()
    with torch.no_grad():
        for start in tqdm(range(0, len(recs), batch_size), desc="surrogate", disable=not progress):
            chunk = recs[start:start + batch_size]
            batch = CrystalBatch.from_records([r for _, r in chunk]).to(device)
            out = model.predict(batch)
            dos = out.dos.double().cpu().numpy()
            ptr = batch.ptr.cpu().numpy()
            for k, (i, _) in enumerate(chunk):
                if not bool(out.graph_ok[k]):
                    reasons[i] = out.reasons[k]
                    continue
                block = dos[ptr[k]:ptr[k + 1]]
                preds[i] = standardiser.inverse(block) if standardiser is not None else block.astype(np.float32)
    return preds, reasons
