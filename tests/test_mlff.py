"""MLFF interface (SevenNet offline; others give clear errors when unavailable)."""

from __future__ import annotations

import numpy as np
import pytest

from dosmatgen.errors import ConfigError
from dosmatgen.evaluate.mlff import get_calculator, limit_threads, relax


def test_unknown_calculator():
    with pytest.raises(ConfigError, match="unknown MLFF"):
        get_calculator("nope")


def test_orb_missing_is_clear(monkeypatch):
    import sys

    for mod in ["orb_models", *[m for m in sys.modules if m.startswith("orb_models.")]]:
        monkeypatch.setitem(sys.modules, mod, None)  # as if orb-models were not installed
    with pytest.raises(ConfigError, match=r"pip install orb-models"):
        get_calculator("orb")


def test_sevenn_missing_weights_file(tmp_path):
    pytest.importorskip("sevenn")
    with pytest.raises(ConfigError, match="does not exist"):
        get_calculator("sevenn", weights=tmp_path / "none.pth")


def test_sevenn_relaxes_compressed_rocksalt():
    pytest.importorskip("sevenn")
    from ase.build import bulk

    limit_threads(1)
    calc = get_calculator("sevenn")
    start = bulk("NaCl", "rocksalt", a=5.2)  # 9% compressed: the cell must expand
    atoms, energy, converged = relax(start, calc, fmax=0.05, steps=200)
    assert converged and np.isfinite(energy)
    assert atoms.get_volume() > start.get_volume() * 1.1
    assert np.abs(atoms.get_forces()).max() < 0.05 + 1e-6
    assert 5.4 < (4 * atoms.get_volume()) ** (1 / 3) < 5.9  # conventional a of NaCl (PBE ~5.7 Å)


def _child_threads(_: int) -> str:
    import os

    return os.environ.get("OMP_NUM_THREADS", "unset")


def test_spawned_workers_get_one_thread_and_the_parent_env_is_restored(monkeypatch):
    import multiprocessing as mp

    from dosmatgen.threads import THREAD_ENV, single_threaded_children

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with single_threaded_children():
        pool = mp.get_context("spawn").Pool(1)
    with pool:
        assert pool.map(_child_threads, [0]) == ["1"]
    import os

    assert os.environ["OMP_NUM_THREADS"] == "2" and "MKL_NUM_THREADS" not in os.environ
    assert "OPENBLAS_NUM_THREADS" in THREAD_ENV
