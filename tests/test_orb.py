"""Orb-v2 (the ``orb`` extra, installed by scripts/setup.sh) through the MLFF registry, offline.

The real weights download at first use; here a randomly initialised Orb-v2 (orb-models' own
architecture builder) is written to a file and given as ``weights``, so the wiring runs without
network: the registry selects Orb by name, ASE's FIRE moves the atoms, torch-sim's batched path
runs. Random forces are nonsense; only finiteness and movement are checked.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("orb_models")

from ase.build import bulk  # noqa: E402

from dosmatgen.errors import ConfigError  # noqa: E402
from dosmatgen.evaluate.mlff import get_calculator, limit_threads, relax  # noqa: E402


@pytest.fixture(scope="module")
def random_orb(tmp_path_factory):
    import torch
    from orb_models.forcefield import pretrained

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("orb") / "orb_v2_random.ckpt"
    torch.save(pretrained.orb_v2_architecture().state_dict(), path)
    return path


def cu_cell():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.mark.parametrize("name", ["orb", "orb-v2", "ORB"])
def test_registry_selects_orb_and_ase_relaxes(random_orb, name):
    from orb_models.forcefield.calculator import ORBCalculator

    limit_threads(1)
    calc = get_calculator(name, weights=random_orb)
    assert isinstance(calc, ORBCalculator)
    start = cu_cell()
    atoms, energy, _ = relax(start, calc, fmax=1e-6, steps=3)
    assert np.isfinite(energy) and np.all(np.isfinite(atoms.get_forces()))
    assert np.abs(atoms.positions - start.positions).max() > 1e-6


def test_batched_relaxation_through_torch_sim(random_orb):
    pytest.importorskip("torch_sim")
    from dosmatgen.evaluate.batched_relax import BatchedRelaxer

    crystals = [cu_cell(), bulk("NaCl", "rocksalt", a=5.4)]
    outcomes = BatchedRelaxer("orb-v2", fmax=1e-6, steps=3, max_atoms=64, weights=random_orb).relax(crystals, progress=False)
    for start, out in zip(crystals, outcomes):
        assert not out.dropped and out.steps == 3 and np.isfinite([out.energy, out.initial_energy]).all()
        assert np.abs(out.atoms.positions - start.positions).max() > 1e-6


def test_weights_of_another_architecture_are_one_clear_line(tmp_path):
    import torch

    path = tmp_path / "not_orb.ckpt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ConfigError, match="Orb-v2 weights could not be loaded") as info:
        get_calculator("orb", weights=path)
    assert "\n" not in str(info.value)


def test_offline_download_is_one_clear_line(monkeypatch):
    """No network here: the downloader is replaced by one that fails as offline does."""
    from orb_models.forcefield import pretrained

    def offline(url):
        raise ConnectionError(f"Failed to resolve host of {url}\n(no network)")

    monkeypatch.setattr(pretrained, "cached_path", offline)
    with pytest.raises(ConfigError, match="network access") as info:
        get_calculator("orb")
    assert "\n" not in str(info.value) and "ConnectionError" in str(info.value)
