"""The sampler's pair-repulsion option: geometry of one push, periodic images, crystals kept
apart, the chain unchanged when inactive, and fewer overlapping atoms from an untrained model."""

from __future__ import annotations

import pytest
import torch

from dosmatgen.errors import ConfigError
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.diffusion import JointDiffusion
from dosmatgen.generate.repulsion import PairRepulsion
from dosmatgen.generate.sampler import sample
from test_model_crystals import toy_records
from test_model_sampler import Oracle


def _min_image_distance(a: torch.Tensor, b: torch.Tensor, lattice: torch.Tensor) -> float:
    d = (b - a + 0.5) % 1.0 - 0.5
    return float((d @ lattice).norm())


def test_a_close_pair_ends_at_the_distance_along_its_separation():
    lat = torch.diag(torch.tensor([4.0, 5.0, 6.0])).unsqueeze(0)
    x = torch.tensor([[0.10, 0.20, 0.30], [0.12, 0.22, 0.31], [0.60, 0.70, 0.80]], dtype=torch.float64)
    y = PairRepulsion(1.2).apply(x, lat.double(), torch.zeros(3, dtype=torch.long))
    assert _min_image_distance(y[0], y[1], lat[0].double()) == pytest.approx(1.2, abs=1e-9)
    before, after = (x[1] - x[0]) @ lat[0].double(), (y[1] - y[0]) @ lat[0].double()
    assert float(torch.nn.functional.cosine_similarity(before, after, dim=0)) == pytest.approx(1.0)
    assert torch.allclose((y[0] + y[1]) @ lat[0].double(), (x[0] + x[1]) @ lat[0].double())  # centre kept
    assert torch.equal(y[2], x[2])  # a far atom does not move


def test_a_pair_across_the_cell_boundary_is_pushed_across_it():
    """Minimum image: 0.01 and 0.99 are 0.08 Å apart through the boundary, not 3.92 Å across."""
    lat = 4.0 * torch.eye(3).unsqueeze(0)
    x = torch.tensor([[0.01, 0.5, 0.5], [0.99, 0.5, 0.5]])
    y = PairRepulsion(1.0).apply(x, lat, torch.zeros(2, dtype=torch.long))
    assert _min_image_distance(y[0], y[1], lat[0]) == pytest.approx(1.0, abs=1e-5)
    assert 0.1 < float(y[0, 0]) < 0.2 and 0.8 < float(y[1, 0]) < 0.9


def test_atoms_of_different_crystals_do_not_repel():
    """Negative control: two one-atom crystals at the same coordinates are left alone."""
    lat = 3.0 * torch.eye(3).expand(2, 3, 3)
    x = torch.full((2, 3), 0.3)
    y = PairRepulsion(1.0).apply(x, lat, torch.tensor([0, 1]))
    assert torch.equal(x, y)


def test_coincident_atoms_part_and_the_direction_follows_the_generator():
    lat = 5.0 * torch.eye(3).unsqueeze(0)
    x = torch.full((2, 3), 0.5)
    batch = torch.zeros(2, dtype=torch.long)
    a = PairRepulsion(1.0).apply(x, lat, batch, torch.Generator().manual_seed(1))
    b = PairRepulsion(1.0).apply(x, lat, batch, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert _min_image_distance(a[0], a[1], lat[0]) == pytest.approx(1.0, abs=1e-5)


def test_bad_settings_are_refused():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="distance"):
            PairRepulsion(bad)
    with pytest.raises(ConfigError, match="until"):
        PairRepulsion(1.0, until=-1)


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return JointDiffusion(ModelConfig.tiny(), DiffusionConfig())


def _coincident_target() -> CrystalBatch:
    """The toy crystals with atoms 0 and 1 of the first one on one site: a point mass the oracle
    denoiser drives the chain to, overlap included."""
    spec = CrystalBatch.from_records(toy_records())
    x = spec.frac_coords.clone()
    x[1] = x[0]
    return CrystalBatch(spec.atom_types, x, spec.lattices, spec.num_atoms, spec.batch, spec.dos,
                        spec.cond_mask, spec.fixed_mask, spec.structure_ids)


def _distance_01(res: CrystalBatch) -> float:
    return _min_image_distance(res.frac_coords[0], res.frac_coords[1], res.lattices[0])


def test_inactive_repulsion_leaves_the_chain_unchanged_and_an_active_one_parts_atoms(untrained):
    """With the exact score of a crystal whose two atoms share a site the chain ends with them on
    it (the failure the option is for); pushing to the end parts them to the distance; pushing
    only until t = 50 lets the last steps (here an oracle that wants the overlap) bring them back;
    a repulsion that never acts changes nothing."""
    target = _coincident_target()
    assert int(target.num_atoms[0]) >= 2 and float(target.lattices[0].det().abs()) > 1.0
    run = dict(guidance=Oracle(target), steps=40, seed=2, step_lr=0.0, progress=False)
    plain = sample(untrained, target, **run)
    assert _distance_01(plain) < 1e-3
    never = sample(untrained, target, repulsion=PairRepulsion(1.0, until=10_000), **run)
    assert torch.equal(plain.frac_coords, never.frac_coords) and torch.equal(plain.lattices, never.lattices)
    to_end = sample(untrained, target, repulsion=PairRepulsion(1.0, until=0), **run)
    assert _distance_01(to_end) == pytest.approx(1.0, abs=1e-3)
    assert torch.equal(to_end.atom_types, plain.atom_types)  # only coordinates are pushed
    early = sample(untrained, target, repulsion=PairRepulsion(1.0, until=50), **run)
    assert _distance_01(early) < 0.1
