"""CSPNet-style periodic E(3)-invariant denoiser with a per-atom DOS condition (paper §2, Fig. 1).

Message passing over the fully connected graph of each crystal (self-loops included). Edge input:
[h_i, h_j, L L^T (9 numbers), Fourier features of (x_j - x_i) mod 1]. These are invariant to
rotations and reflections of the Cartesian frame (L -> L R^T), to periodic translations of the
fractional coordinates and (with mean aggregation) to atom permutations. Outputs:

- ``eps_A`` (M, Z): noise of the continuous type vectors (A10);
- ``score_X`` (M, 3): the wrapped-normal score in fractional coordinates times sqrt(lambda_t) (A9);
- ``eps_L`` (B, 3, 3): noise of the lattice (A8), produced as ``W @ L`` with an invariant 3x3
  ``W`` so that it rotates with the (row-vector) lattice: eps_L(L R^T) = eps_L(L) R^T.

Condition (Fig. 1): the standardised DOS of a conditioned atom is projected to the hidden size and
added to that atom's type embedding; an unconditioned atom gets a learned null vector instead.
With ``ModelConfig.condition_every_layer`` (not in the paper) that condition vector is also added,
through a linear map of its own, to the node features before every message-passing layer.
``ModelConfig.dos_encoder = "conv"`` and ``ModelConfig.type_head = "group_period"`` (not in the
paper) are issue 35's training-side candidates: :class:`ConvDOSEncoder`, :class:`GroupPeriodHead`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch_geometric.utils import scatter

from dosmatgen.model.config import ModelConfig


class DenoiserOutput(NamedTuple):
    eps_A: torch.Tensor
    score_X: torch.Tensor
    eps_L: torch.Tensor


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def fully_connected_edges(num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (i, j) inside each crystal, self-pairs included, without a Python loop.

    Returns ``edge_index`` (2, E) with E = sum N_b^2 (row 0 = receiving atom i, row 1 = j) and
    ``edge_graph`` (E,), the crystal of each edge.
    """
    n = num_atoms.long()
    b = n.shape[0]
    start = torch.cumsum(n, 0) - n
    n2 = n * n
    edge_graph = torch.repeat_interleave(torch.arange(b, device=n.device), n2)
    edge_start = torch.cumsum(n2, 0) - n2
    k = torch.arange(edge_graph.shape[0], device=n.device) - edge_start[edge_graph]
    ng = n[edge_graph]
    i = torch.div(k, ng, rounding_mode="floor") + start[edge_graph]
    j = k % ng + start[edge_graph]
    return torch.stack([i, j]), edge_graph


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style embedding of the integer timestep: [sin(t w_k), cos(t w_k)] with
    w_k = max_period^(-k / (half - 1)), computed in float32 in the reference code's order of
    operations, exp(k * -(ln(max_period) / (half - 1))), so that an imported release's network
    sees the same embedding bit for bit (another order moves it by ~1e-5)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(max_period) / max(half - 1, 1)))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t.to(self.freqs.dtype).unsqueeze(-1) * self.freqs
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class FourierFeatures(nn.Module):
    """sin(2 pi k d), cos(2 pi k d) for k = 1..F and each of the 3 axes: periodic in d."""

    def __init__(self, num_freqs: int):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * torch.arange(1, num_freqs + 1, dtype=torch.float32),
                             persistent=False)

    @property
    def dim(self) -> int:
        return 6 * self.freqs.shape[0]

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        arg = (d.unsqueeze(-1) * self.freqs).flatten(1)  # (E, 3F)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class ConvDOSEncoder(nn.Module):
    """The paper's linear map of a site DOS plus 1-D convolutions over its energy grid.

    Four stride-2 convolutions (kernel 9, SiLU; 1 -> 8 -> 16 -> 16 -> 32 channels) turn the
    400-bin DOS into 32 x 25 local features (0.8 eV apart on the demo grid) that a linear map adds
    to the linear projection: features that respond to where a band sits and how wide it is, which
    a single linear map of the bins cannot make nonlinear before the message passing.
    """

    def __init__(self, dos_dim: int, hidden: int):
        super().__init__()
        self.linear = nn.Linear(dos_dim, hidden)
        layers: list[nn.Module] = []
        length, channels = dos_dim, 1
        for width in (8, 16, 16, 32):
            layers += [nn.Conv1d(channels, width, kernel_size=9, stride=2, padding=4), nn.SiLU()]
            length, channels = (length + 1) // 2, width
        self.conv = nn.Sequential(*layers)
        self.conv_out = nn.Linear(channels * length, hidden)

    def forward(self, dos: torch.Tensor) -> torch.Tensor:
        """(M, dos_dim) -> (M, hidden)."""
        features = self.conv(dos.unsqueeze(1)).flatten(1)
        return self.linear(dos) + self.conv_out(features)


def group_and_period(z: int) -> tuple[int, int]:
    """(group 1-18, period 1-7) of atomic number ``z``; La-Lu and Ac-Lr count as group 3.

    >>> group_and_period(35), group_and_period(53), group_and_period(66)
    ((17, 4), (17, 5), (3, 6))
    """
    starts = (1, 3, 11, 19, 37, 55, 87, 119)
    period = next(p for p in range(1, 8) if z < starts[p])
    k = z - starts[period - 1]
    if period == 1:
        return (1 if k == 0 else 18), 1
    if period <= 3:
        return (k + 1 if k < 2 else k + 11), period
    if period <= 5:
        return k + 1, period
    return (k + 1 if k < 2 else 3 if k < 17 else k - 13), period


class GroupPeriodHead(nn.Module):
    """Element values as element + group + period terms: logit_Z = w_Z.h + g_group(Z).h + p_period(Z).h.

    The same function class as one linear map (a sum of linear maps), parameterised so that the
    elements of a group share what they have in common and the period term is learned from every
    period's elements at once. Column k of the output is atomic number k + 1.
    """

    def __init__(self, hidden: int, max_z: int):
        super().__init__()
        table = torch.tensor([group_and_period(z) for z in range(1, max_z + 1)]) - 1
        self.register_buffer("group_index", table[:, 0], persistent=False)
        self.register_buffer("period_index", table[:, 1], persistent=False)
        self.element = nn.Linear(hidden, max_z)
        self.group = nn.Linear(hidden, 18, bias=False)
        self.period = nn.Linear(hidden, 7, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.element(h) + self.group(h)[:, self.group_index] + self.period(h)[:, self.period_index]


class CSPLayer(nn.Module):
    """One message-passing layer: edge MLP -> mean over neighbours -> node MLP, residual (pre-LN).

    The edge MLP's first layer acts on [h_i, h_j, L L^T, fourier(x_j - x_i)]; it is computed as
    W_i h_i + W_j h_j + W_g [L L^T, fourier] with the node terms evaluated once per atom instead of
    once per edge (the same function and parameter count as one Linear on the concatenation).
    """

    def __init__(self, hidden: int, fourier_dim: int, layer_norm: bool = True):
        super().__init__()
        self.edge_node = nn.Linear(hidden, 2 * hidden, bias=False)  # [W_i; W_j]
        self.edge_geometry = nn.Linear(9 + fourier_dim, hidden)
        self.edge_mlp = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(),
                                      nn.Linear(hidden, hidden), nn.SiLU())
        self.norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_geometry: torch.Tensor) -> torch.Tensor:
        """``edge_geometry`` (E, 9 + fourier_dim) = [L L^T of the edge's crystal, fourier(x_j - x_i)]."""
        x = self.norm(h)
        i, j = edge_index
        wi, wj = self.edge_node(x).chunk(2, dim=-1)
        m = wi[i] + wj[j] + self.edge_geometry(edge_geometry)
        m = self.edge_mlp(m)
        agg = scatter(m, i, dim=0, dim_size=h.shape[0], reduce="mean")
        return h + self.node_mlp(torch.cat([x, agg], dim=-1))


class CSPBackbone(nn.Module):
    """Node features of S_t (shared by the denoiser and the time-dependent DOS regressor).

    With ``conditional=True`` the DOS projection and the null vector are part of the model.
    """

    def __init__(self, cfg: ModelConfig, conditional: bool = True):
        super().__init__()
        self.cfg = cfg
        self.conditional = conditional
        h = cfg.hidden_dim
        self.type_embedding = nn.Linear(cfg.max_z, h)
        if conditional:
            self.dos_projection = (ConvDOSEncoder(cfg.dos_dim, h) if cfg.dos_encoder == "conv"
                                   else nn.Linear(cfg.dos_dim, h))
            self.null_condition = nn.Parameter(torch.zeros(h))
        if conditional and cfg.condition_every_layer:
            self.layer_conditions = nn.ModuleList(nn.Linear(h, h) for _ in range(cfg.num_layers))
        if conditional and cfg.self_condition:  # no bias: no estimate (None) adds nothing
            self.type_estimate_embedding = nn.Linear(cfg.max_z, h, bias=False)
        self.time_embedding = SinusoidalTimeEmbedding(cfg.time_dim)
        self.input = nn.Linear(h + cfg.time_dim, h)
        self.fourier = FourierFeatures(cfg.num_freqs)
        self.layers = nn.ModuleList(CSPLayer(h, self.fourier.dim, cfg.layer_norm) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(h) if cfg.layer_norm else nn.Identity()

    def forward(self, types: torch.Tensor, frac_coords: torch.Tensor, lattices: torch.Tensor,
                num_atoms: torch.Tensor, batch: torch.Tensor, t: torch.Tensor,
                dos: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None,
                type_estimate: torch.Tensor | None = None) -> torch.Tensor:
        """Node features (M, hidden). ``t`` (B,) integer timesteps; ``dos`` (M, 400) and
        ``cond_mask`` (M,) bool for a conditional backbone (``None`` mask: no atom conditioned);
        ``type_estimate`` (M, Z) read by a self-conditioned backbone only (None: no estimate)."""
        h = self.type_embedding(types)
        if type_estimate is not None and hasattr(self, "type_estimate_embedding"):
            h = h + self.type_estimate_embedding(type_estimate.to(h.dtype))
        condition = None
        if self.conditional:
            condition = self.null_condition.expand_as(h)
            if cond_mask is not None and dos is not None:
                condition = torch.where(cond_mask.unsqueeze(-1), self.dos_projection(dos.to(h.dtype)), condition)
            h = h + condition
        temb = self.time_embedding(t)[batch]
        h = self.input(torch.cat([h, temb], dim=-1))

        edge_index, edge_graph = fully_connected_edges(num_atoms)
        gram = (lattices @ lattices.transpose(-1, -2)).reshape(-1, 9)
        diff = (frac_coords[edge_index[1]] - frac_coords[edge_index[0]]) % 1.0
        edge_geometry = torch.cat([gram[edge_graph], self.fourier(diff)], dim=-1)
        per_layer = getattr(self, "layer_conditions", None)
        for k, layer in enumerate(self.layers):
            if per_layer is not None:
                h = h + per_layer[k](condition)
            h = layer(h, edge_index, edge_geometry)
        return self.final_norm(h)


class CSPNet(nn.Module):
    """The denoiser f_theta(S_t, t, y): backbone + three invariant/equivariant heads.

    The type head's output is eps_A for the paper's ε-prediction and the logits of the clean
    element for ``DiffusionConfig.type_target = "x0"`` (:class:`JointDiffusion` interprets it).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_dim
        self.backbone = CSPBackbone(cfg, conditional=True)
        self.type_head = GroupPeriodHead(h, cfg.max_z) if cfg.type_head == "group_period" else nn.Linear(h, cfg.max_z)
        self.coord_head = nn.Linear(h, 3, bias=False)
        self.lattice_head = nn.Linear(h, 9, bias=False)

    def forward(self, types: torch.Tensor, frac_coords: torch.Tensor, lattices: torch.Tensor,
                num_atoms: torch.Tensor, batch: torch.Tensor, t: torch.Tensor,
                dos: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None,
                type_estimate: torch.Tensor | None = None) -> DenoiserOutput:
        h = self.backbone(types, frac_coords, lattices, num_atoms, batch, t, dos, cond_mask, type_estimate)
        return self.heads(h, lattices, num_atoms, batch)

    def heads(self, h: torch.Tensor, lattices: torch.Tensor, num_atoms: torch.Tensor,
              batch: torch.Tensor) -> DenoiserOutput:
        """The three heads on the backbone's node features ``h`` (M, hidden)."""
        graph_h = scatter(h, batch, dim=0, dim_size=num_atoms.shape[0], reduce="mean")
        w = self.lattice_head(graph_h).view(-1, 3, 3)
        return DenoiserOutput(eps_A=self.type_head(h), score_X=self.coord_head(h), eps_L=w @ lattices)
