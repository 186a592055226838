"""Small random crystals and model configs shared by the trainer and CLI tests."""

from __future__ import annotations

import numpy as np

from dosmatgen.data.schema import CrystalRecord

#: A diffusion model small enough to train for a few steps inside a unit test.
TINY_DIFFUSION = {"model": {"hidden_dim": 16, "num_layers": 1, "num_freqs": 2, "time_dim": 8},
                  "diffusion": {"timesteps": 20, "sigma_norm_samples": 200}}


def random_records(n: int, seed: int = 0, prefix: str = "c") -> list[CrystalRecord]:
    """``n`` crystals of 1-3 atoms (Z 1-19) in a near-cubic 3-5 Å cell with a random site DOS."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(1, 4))
        lat = np.eye(3) * rng.uniform(3, 5) + rng.normal(0, 0.2, (3, 3))
        out.append(CrystalRecord(f"{prefix}{i}", rng.integers(1, 20, k), rng.random((k, 3)), lat,
                                 rng.random((k, 400)).astype(np.float32)))
    return out
