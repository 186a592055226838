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


def write_workspace(d, prefix: str) -> tuple[list[CrystalRecord], "DOSStandardiser"]:
    """In folder ``d``: 12 random crystals as the store ``s.npz``, their 8/2/2 ``split.json``,
    the training standardiser ``std.json`` and an untrained tiny diffusion checkpoint ``diff.pt``
    (torch seed 0). Returns the records and the standardiser."""
    import json

    import torch

    from dosmatgen.checkpoint import save_checkpoint
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.data.store import save_records
    from dosmatgen.model.factory import build_model

    recs = random_records(12, prefix=prefix)
    save_records(d / "s.npz", recs)
    (d / "split.json").write_text(json.dumps({"train": [r.structure_id for r in recs[:8]],
                                              "val": [r.structure_id for r in recs[8:10]],
                                              "test": [r.structure_id for r in recs[10:]]}))
    std = DOSStandardiser.fit([r.dos for r in recs[:8]])
    std.save(d / "std.json")
    torch.manual_seed(0)
    save_checkpoint(d / "diff.pt", build_model("diffusion", TINY_DIFFUSION), "diffusion", std)
    return recs, std
