"""Surrogate DOS model: periodic graph, invariances, failures, loss, trainer round trip."""

import numpy as np
import pytest
import torch

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import ConfigError
from dosmatgen.model.surrogate import (SurrogateConfig, SurrogateDOSModel, periodic_radius_graph,
                                          predict_site_dos)
from dosmatgen.model.batch import CrystalBatch

A = 5.64
FCC = np.array([[0, A / 2, A / 2], [A / 2, 0, A / 2], [A / 2, A / 2, 0]])


def nacl(dos=None, lattice=FCC, sid="nacl"):
    return CrystalRecord(sid, [11, 17], [[0, 0, 0], [.5, .5, .5]], lattice, dos)


def graph_of(records, cutoff, k):
    b = CrystalBatch.from_records(records)
    return b, periodic_radius_graph(b.frac_coords, b.lattices, b.num_atoms, cutoff, k)


def edge_lengths(b, g):
    vec = (b.frac_coords[g.dst] + g.shift - b.frac_coords[g.src]).double() @ b.lattices[0].double()
    return vec.norm(dim=-1)


def test_graph_first_shell_of_rock_salt():
    b, g = graph_of([nacl()], cutoff=3.0, k=12)
    assert g.src.tolist().count(0) == 6 and g.src.tolist().count(1) == 6
    assert torch.allclose(edge_lengths(b, g), torch.full((12,), A / 2, dtype=torch.float64), atol=1e-5)
    assert bool((b.atom_types[g.src] != b.atom_types[g.dst]).all())  # Na-Cl bonds only


def test_graph_caps_neighbours_keeping_the_nearest():
    b, g = graph_of([nacl()], cutoff=4.1, k=8)  # 6 at 2.82 Å + 12 at 3.99 Å within the cutoff
    d = edge_lengths(b, g)
    assert len(d) == 16
    assert int((d < 3.0).sum()) == 12


def test_graph_self_images_of_a_single_atom():
    b, g = graph_of([CrystalRecord("cu", [29], [[0.3, 0.2, 0.1]], np.eye(3) * 3.0)], cutoff=3.5, k=20)
    assert len(g.src) == 6
    assert torch.allclose(edge_lengths(b, g), torch.full((6,), 3.0, dtype=torch.float64), atol=1e-5)


def test_graph_failures_are_flagged_not_raised():
    flat = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 0.05]])
    b, g = graph_of([nacl(), nacl(lattice=flat)], cutoff=6.0, k=12)
    assert g.graph_ok.tolist() == [True, False]
    assert g.reasons == [None, "too_many_images"]
    assert bool((g.src < 2).all())  # no edges for the failed crystal


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return SurrogateDOSModel.from_config(SurrogateConfig.tiny().to_dict()).eval()


def test_config_roundtrip_and_errors():
    m = SurrogateDOSModel.from_config({"hidden_dim": 8, "cutoff": 5})
    assert SurrogateDOSModel.from_config(m.config).config == m.config
    with pytest.raises(ConfigError, match="unknown surrogate config"):
        SurrogateDOSModel.from_config({"hidden": 8})
    with pytest.raises(ConfigError, match="cutoff"):
        SurrogateDOSModel.from_config({"cutoff": -1})


def test_prediction_invariances(tiny):
    rng = np.random.default_rng(0)
    rec = CrystalRecord("x", [11, 17, 8], rng.random((3, 3)), np.diag([3.1, 3.4, 3.9]) + 0.3 * rng.random((3, 3)))
    base = tiny(CrystalBatch.from_records([rec]))
    assert base.shape == (3, 400)
    # rotation of the lattice (Cartesian frame) and integer translation of coordinates
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = CrystalRecord("r", rec.atomic_numbers, rec.frac_coords + [1, 0, -2], rec.lattice @ q)
    assert torch.allclose(tiny(CrystalBatch.from_records([rot])), base, atol=1e-4)
    # permutation of atoms permutes the predictions
    p = [2, 0, 1]
    perm = CrystalRecord("p", rec.atomic_numbers[p], rec.frac_coords[p], rec.lattice)
    assert torch.allclose(tiny(CrystalBatch.from_records([perm])), base[p], atol=1e-4)


def test_supercell_gives_the_same_site_dos(tiny):
    sc = nacl().to_structure() * (2, 1, 1)
    rec_sc = CrystalRecord.from_structure(sc, "sc")
    m = SurrogateDOSModel.from_config({**SurrogateConfig.tiny().to_dict(), "cutoff": 3.0, "max_neighbors": 6}).eval()
    one = m(CrystalBatch.from_records([nacl()]))
    two = m(CrystalBatch.from_records([rec_sc]))
    na = rec_sc.atomic_numbers == 11
    assert torch.allclose(two[torch.from_numpy(na)], one[0].expand(2, -1), atol=1e-4)


def test_blocked_neighbour_search_on_a_big_cell_matches(tiny):
    sc = CrystalRecord.from_structure(nacl().to_structure() * (2, 2, 2), "sc")
    cfg = {**SurrogateConfig.tiny().to_dict(), "cutoff": 4.1, "max_neighbors": 18}
    m_full = SurrogateDOSModel.from_config(cfg).eval()
    m_blocked = SurrogateDOSModel.from_config({**cfg, "max_pairs": 1000}).eval()  # 16 atoms x 27 images: 2 centres per block
    m_blocked.load_state_dict(m_full.state_dict())
    b = CrystalBatch.from_records([sc])
    full, blocked = m_full.predict(b), m_blocked.predict(b)
    assert bool(blocked.graph_ok.all())
    assert torch.allclose(full.dos, blocked.dos, atol=1e-5)
    too_small = SurrogateDOSModel.from_config({**cfg, "max_pairs": 400}).eval()
    assert too_small.predict(b).reasons == ["too_many_pairs"]


def test_loss_is_l1_on_conditioned_atoms_of_good_graphs(tiny):
    flat = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 0.05]])
    recs = [nacl(np.ones((2, 400))), nacl(np.ones((2, 400)), lattice=flat)]
    b = CrystalBatch.from_records(recs)
    out = tiny.predict(b)
    expect = (out.dos[:2] - 1).abs().mean()
    got = tiny.loss(b)
    assert torch.allclose(got["loss"], expect)
    assert float(got["graph_failed"]) == 1.0


def test_a_few_adam_steps_fit_two_crystals(tiny):
    rng = np.random.default_rng(1)
    recs = [nacl(rng.normal(size=(2, 400)).astype(np.float32)),
            CrystalRecord("cu", [29], [[0, 0, 0]], FCC * 3.6 / A, rng.normal(size=(1, 400)).astype(np.float32))]
    b = CrystalBatch.from_records(recs)
    tiny.train()
    opt = torch.optim.Adam(tiny.parameters(), lr=1e-2)
    first = float(tiny.loss(b)["loss"].detach())
    for _ in range(60):
        opt.zero_grad()
        loss = tiny.loss(b)["loss"]
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_predict_site_dos_units_and_failures(tiny):
    std = DOSStandardiser(np.full(400, 2.0), np.full(400, 3.0))
    items = [(np.array([11, 17]), np.array([[0, 0, 0], [.5, .5, .5]]), FCC),
             (np.array([11, 17]), np.full((2, 3), np.nan), FCC),
             (np.array([11, 0]), np.zeros((2, 3)), FCC),
             (np.array([11, 17]), np.array([[0, 0, 0], [.5, .5, .5]]), np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 0.05]])),
             (np.array([11, 17]), np.zeros((2, 3)), np.zeros((3, 3)))]
    preds, reasons = predict_site_dos(tiny, std, items, batch_size=2)
    assert reasons == [None, "non_finite", "unknown_element", "too_many_images", "degenerate_lattice"]
    assert preds[1] is None and preds[4] is None
    raw = tiny(CrystalBatch.from_records([nacl()])).detach().double().numpy() * 3.0 + 2.0
    np.testing.assert_allclose(preds[0], raw, rtol=1e-5, atol=1e-5)


def test_trainer_round_trip(tmp_path):
    from dosmatgen.checkpoint import load_model
    from dosmatgen.training import TrainConfig, train

    rng = np.random.default_rng(2)
    recs = [nacl(rng.random((2, 400)).astype(np.float32), sid=f"n{i}",
                 lattice=FCC * (1 + 0.02 * i)) for i in range(6)]
    std = DOSStandardiser.fit([r.dos for r in recs])
    cfg = TrainConfig(epochs=2, batch_size=4, device="cpu", progress=False, seed=0)
    path = train("surrogate", SurrogateConfig.tiny().to_dict(), recs[:4], recs[4:], std, cfg, tmp_path)
    model, std2, meta = load_model(path)
    assert meta["kind"] == "surrogate" and isinstance(model, SurrogateDOSModel)
    np.testing.assert_allclose(std2.mean, std.mean, rtol=1e-6)
    preds, _ = predict_site_dos(model, std2, [(r.atomic_numbers, r.frac_coords, r.lattice) for r in recs[4:]])
    assert all(p.shape == (2, 400) and np.all(np.isfinite(p)) for p in preds)
