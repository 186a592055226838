"""CSPNet: fully connected edges, symmetries (permutation, periodic translation, rotation), condition."""

from __future__ import annotations

import pytest
import torch

from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.denoiser import CSPNet, count_parameters, fully_connected_edges
from dosmatgen.model.regressor import TimeDependentDOSRegressor
from test_model_crystals import _one_thread  # noqa: F401

SIZES = [3, 1, 5, 2]


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = torch.tensor(SIZES)
    m, b = int(n.sum()), len(SIZES)
    batch = torch.repeat_interleave(torch.arange(b), n)
    types = torch.randn(m, 100, generator=g, dtype=torch.float64)
    x = torch.rand(m, 3, generator=g, dtype=torch.float64)
    lat = torch.randn(b, 3, 3, generator=g, dtype=torch.float64) + 4 * torch.eye(3, dtype=torch.float64)
    t = torch.randint(1, 1000, (b,), generator=g)
    dos = torch.randn(m, 400, generator=g, dtype=torch.float64)
    cond = torch.rand(m, generator=g) < 0.5
    return types, x, lat, n, batch, t, dos, cond


def _net(seed: int = 0) -> CSPNet:
    torch.manual_seed(seed)
    net = CSPNet(ModelConfig(hidden_dim=32, num_layers=2, num_freqs=5, time_dim=16)).double()
    with torch.no_grad():  # a non-zero null vector so that the condition path is exercised
        net.backbone.null_condition.normal_()
    return net


def _random_rotation(seed: int, reflect: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    return q


def test_fully_connected_edges_match_a_loop():
    n = torch.tensor([2, 1, 3])
    edge_index, edge_graph = fully_connected_edges(n)
    want, graphs, start = [], [], 0
    for g, k in enumerate(n.tolist()):
        for i in range(k):
            for j in range(k):
                want.append((start + i, start + j))
                graphs.append(g)
        start += k
    assert [tuple(e) for e in edge_index.t().tolist()] == want
    assert edge_graph.tolist() == graphs


def test_permutation_equivariance():
    net = _net()
    types, x, lat, n, batch, t, dos, cond = _inputs()
    out = net(types, x, lat, n, batch, t, dos, cond)
    g = torch.Generator().manual_seed(5)
    perm = torch.cat([torch.randperm(k, generator=g) + s for k, s in zip(SIZES, [0, 3, 4, 9])])
    outp = net(types[perm], x[perm], lat, n, batch, t, dos[perm], cond[perm])
    assert torch.allclose(outp.eps_A, out.eps_A[perm], atol=1e-10)
    assert torch.allclose(outp.score_X, out.score_X[perm], atol=1e-10)
    assert torch.allclose(outp.eps_L, out.eps_L, atol=1e-10)


def test_periodic_translation_invariance():
    net = _net()
    types, x, lat, n, batch, t, dos, cond = _inputs()
    out = net(types, x, lat, n, batch, t, dos, cond)
    shift = torch.rand(len(SIZES), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 3 - 1
    outs = net(types, (x + shift[batch]) % 1.0, lat, n, batch, t, dos, cond)
    for a, b in zip(out, outs):
        assert torch.allclose(a, b, atol=1e-9)
    # a lattice translation of one atom (x -> x + 1) changes nothing either
    x2 = x.clone()
    x2[0, 1] += 1.0
    for a, b in zip(out, net(types, x2, lat, n, batch, t, dos, cond)):
        assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_equivariance(reflect):
    net = _net()
    types, x, lat, n, batch, t, dos, cond = _inputs()
    out = net(types, x, lat, n, batch, t, dos, cond)
    rot = _random_rotation(7, reflect)
    # rows are lattice vectors: rotating the Cartesian frame maps L -> L R^T
    outr = net(types, x, lat @ rot.T, n, batch, t, dos, cond)
    assert torch.allclose(outr.eps_A, out.eps_A, atol=1e-9)
    assert torch.allclose(outr.score_X, out.score_X, atol=1e-9)
    assert torch.allclose(outr.eps_L, out.eps_L @ rot.T, atol=1e-9)
    assert not torch.allclose(outr.eps_L, out.eps_L, atol=1e-3)  # really equivariant, not invariant


def test_crystals_do_not_talk_to_each_other():
    net = _net()
    types, x, lat, n, batch, t, dos, cond = _inputs()
    out = net(types, x, lat, n, batch, t, dos, cond)
    s = slice(4, 9)  # the third crystal alone
    alone = net(types[s], x[s], lat[2:3], n[2:3], torch.zeros(5, dtype=torch.long), t[2:3], dos[s], cond[s])
    assert torch.allclose(alone.eps_A, out.eps_A[s], atol=1e-10)
    assert torch.allclose(alone.eps_L, out.eps_L[2:3], atol=1e-10)


def test_condition_only_through_conditioned_atoms():
    net = _net()
    types, x, lat, n, batch, t, dos, cond = _inputs()
    out = net(types, x, lat, n, batch, t, dos, cond)
    dos2 = dos.clone()
    dos2[~cond] = torch.randn(int((~cond).sum()), 400, dtype=torch.float64)
    for a, b in zip(out, net(types, x, lat, n, batch, t, dos2, cond)):
        assert torch.allclose(a, b)
    dos3 = dos.clone()
    k = int(torch.nonzero(cond)[0])
    dos3[k] += 1.0
    assert not torch.allclose(net(types, x, lat, n, batch, t, dos3, cond).eps_A, out.eps_A)
    # no mask at all = every atom gets the null vector
    none = net(types, x, lat, n, batch, t, dos, None)
    off = net(types, x, lat, n, batch, t, dos, torch.zeros_like(cond))
    assert torch.allclose(none.eps_A, off.eps_A)


def test_regressor_output_is_invariant():
    torch.manual_seed(0)
    reg = TimeDependentDOSRegressor(ModelConfig.tiny(), DiffusionConfig(timesteps=10, sigma_norm_samples=200)).double()
    types, x, lat, n, batch, t, dos, cond = _inputs()
    from dosmatgen.model.batch import NoisyBatch

    t = t % 10 + 1
    st = NoisyBatch(types, x, lat, n, batch, dos, cond)
    out = reg(st, t)
    assert out.shape == (x.shape[0], 400)
    rot = _random_rotation(1, True)
    shift = torch.rand(len(SIZES), 3, dtype=torch.float64)
    moved = reg(st.replace(frac_coords=(x + shift[batch]) % 1.0, lattices=lat @ rot.T), t)
    assert torch.allclose(out, moved, atol=1e-9)


def test_parameter_counts():
    paper = count_parameters(CSPNet(ModelConfig.paper()))
    assert 11_500_000 < paper < 13_500_000  # paper: ~12.3 M
    compact = count_parameters(CSPNet(ModelConfig.compact()))
    assert compact < paper / 10
