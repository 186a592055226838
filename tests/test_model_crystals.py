"""Small pymatgen crystals shared by the model tests (and a check that they are what they claim)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.dos.grid import ENERGY_GRID, N_DOS


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine is small and shared: intra-op threads only add contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def prototype_structures() -> dict[str, Structure]:
    """Eight textbook crystals (2-6 atoms per cell)."""
    fcc = Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]])
    zb = Lattice([[0, 2.71, 2.71], [2.71, 0, 2.71], [2.71, 2.71, 0]])
    fl = Lattice([[0, 2.73, 2.73], [2.73, 0, 2.73], [2.73, 2.73, 0]])
    return {
        "NaCl": Structure(fcc, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "CsCl": Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "ZnS": Structure(zb, ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "CaF2": Structure(fl, ["Ca", "F", "F"], [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]]),
        "Cu3Au": Structure(Lattice.cubic(3.75), ["Au", "Cu", "Cu", "Cu"],
                           [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
        "SrTiO3": Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
        "TiO2": Structure(Lattice.tetragonal(4.59, 2.96), ["Ti", "Ti", "O", "O", "O", "O"],
                          [[0, 0, 0], [0.5, 0.5, 0.5], [0.305, 0.305, 0], [0.695, 0.695, 0],
                           [0.805, 0.195, 0.5], [0.195, 0.805, 0.5]]),
        "ZnO": Structure(Lattice.hexagonal(3.25, 5.21), ["Zn", "Zn", "O", "O"],
                         [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]]),
    }


def toy_dos(z: int) -> np.ndarray:
    """A made-up standardised-looking site DOS that depends on the element only."""
    centre = -8.0 + 16.0 * ((z * 37) % 97) / 97.0
    width = 0.5 + (z % 5) * 0.3
    return (2.0 * np.exp(-0.5 * ((ENERGY_GRID - centre) / width) ** 2) - 0.3).astype(np.float32)


def toy_records(names: list[str] | None = None, with_dos: bool = True) -> list[CrystalRecord]:
    structs = prototype_structures()
    names = names or list(structs)
    out = []
    for name in names:
        s = structs[name]
        dos = np.stack([toy_dos(site.specie.Z) for site in s]) if with_dos else None
        out.append(CrystalRecord.from_structure(s, name, dos))
    return out


def test_prototypes_are_sane():
    recs = toy_records()
    assert len(recs) == 8
    for r in recs:
        r.validate(check_distances=True)
        assert r.dos is not None and r.dos.shape == (r.num_atoms, N_DOS)
    assert recs[0].formula == "NaCl"


# ---- small trained models, built once per test session -------------------------------------------
def train(model, records, steps: int, lr: float, repeat: int = 1, seed: int = 0):
    """Adam with a linearly decaying learning rate and value clipping (as the trainer does)."""
    from dosmatgen.model.batch import CrystalBatch

    torch.manual_seed(seed)
    batch = CrystalBatch.from_records(list(records) * repeat)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model.loss(batch, gen)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()
        sched.step()
    return model


def eval_loss(model, records, draws: int = 16, seed: int = 123) -> float:
    """Mean loss over ``draws`` fixed draws of t and noise."""
    from dosmatgen.model.batch import CrystalBatch

    batch = CrystalBatch.from_records(records)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return sum(float(model.loss(batch, gen)["loss"]) for _ in range(draws)) / draws


@functools.lru_cache(maxsize=None)
def trained_diffusion():
    """(model, loss before, loss after): a small JointDiffusion overfitted on the 8 prototypes."""
    from dosmatgen.model.config import DiffusionConfig, ModelConfig
    from dosmatgen.model.diffusion import JointDiffusion

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        recs = toy_records()
        model = JointDiffusion(ModelConfig(hidden_dim=128, num_layers=2, num_freqs=4, time_dim=16), DiffusionConfig())
        before = eval_loss(model, recs)
        train(model, recs, steps=800, lr=4e-3, repeat=2)
        after = eval_loss(model, recs)
    finally:
        torch.set_num_threads(n)
    return model.eval(), before, after


@functools.lru_cache(maxsize=None)
def trained_regressor():
    """A small TimeDependentDOSRegressor fitted to the prototypes' toy DOS (which depends on the element)."""
    from dosmatgen.model.config import DiffusionConfig, ModelConfig
    from dosmatgen.model.regressor import TimeDependentDOSRegressor

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(1)
        recs = toy_records()
        model = TimeDependentDOSRegressor(ModelConfig(hidden_dim=64, num_layers=2, num_freqs=4, time_dim=16),
                                          DiffusionConfig())
        before = eval_loss(model, recs)
        train(model, recs, steps=600, lr=3e-3, repeat=2, seed=1)
        after = eval_loss(model, recs)
    finally:
        torch.set_num_threads(n)
    return model.eval(), before, after
