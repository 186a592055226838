"""No model at all: how many crystals still match Table 2's tolerances when their fractional
coordinates carry the forward process's noise at t0 (A5: X_0 + sigma_x(t0) z, wrapped) and their
lattice is exact. The baseline of ``channel_probe.py --clamp lattice`` started at t0: a reverse
chain that returns fewer crystals than this has moved the atoms away from where the noise left them.

    .venv/bin/python experiments/real_crystal_training/noise_baseline.py CHECKPOINT SPLIT OUT.json [--t0 200,400,600,800,1000] [--seed 0]

The checkpoint only supplies the noise schedule (sigma_x); the crystals are the split's test part of
the built-in store.
"""

from __future__ import annotations

import argparse
import json

import torch
from pymatgen.core import Structure

from dosmatgen.checkpoint import load_model
from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.metrics import StructureMatchRate
from dosmatgen.io import atomic_save_json
from dosmatgen.paths import RESOURCES


def noised(structure: Structure, sigma: float, gen: torch.Generator) -> Structure:
    """``structure`` with every fractional coordinate moved by ``sigma`` times a standard normal, wrapped."""
    frac = torch.as_tensor(structure.frac_coords, dtype=torch.float64)
    frac = (frac + sigma * torch.randn(frac.shape, generator=gen, dtype=torch.float64)) % 1.0
    return Structure(structure.lattice, structure.species, frac.numpy())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("split")
    p.add_argument("out")
    p.add_argument("--t0", default="200,400,600,800,1000", help="comma-separated times")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    store = DOSStore(RESOURCES / "builtin_dos.npz")
    ids = json.load(open(args.split))["test"]
    targets = [store[i].to_structure() for i in ids]
    diffusion, _, _ = load_model(args.checkpoint, "cpu")
    sigma_x = diffusion.schedule.sigma_x
    matched, sigmas = {}, {}
    for t0 in (int(x) for x in args.t0.split(",")):
        gen = torch.Generator().manual_seed(args.seed)
        sigma = float(sigma_x[t0])
        outcomes = StructureMatchRate().outcomes([noised(s, sigma, gen) for s in targets], targets)
        matched[str(t0)], sigmas[str(t0)] = outcomes.count("match"), round(sigma, 4)
        print(f"t0 {t0} (sigma_x {sigma:.3f}): {matched[str(t0)]} of {len(targets)} match with no model", flush=True)
    atomic_save_json(args.out, {"checkpoint": args.checkpoint, "split": args.split, "seed": args.seed,
                                "n": len(targets), "sigma_x": sigmas, "matched": matched})


if __name__ == "__main__":
    main()
