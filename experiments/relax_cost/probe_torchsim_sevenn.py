"""Probe (issue 17, not part of the pipeline): batched FIRE + Frechet cell filter with torch-sim
0.3.0 and SevenNet 7net-0 (sevenn 0.13) against the suite's one-at-a-time ASE relaxation
(`dosmatgen.evaluate.mlff.relax`), on the same rattled, 3 %-expanded built-in crystals.

sevenn 0.13's own torch-sim wrapper (`sevenn.torchsim.SevenNetModel`) imports
`torch_sim.neighbors.torchsim_nl`, which torch-sim 0.3.0 (the newest for Python 3.11) lacks; this
probe supplies that function from 0.3.0's `vesin_nl_ts`, one system at a time, before importing
the wrapper. Needs `pip install torch-sim-atomistic==0.3.0` (at the time of this probe not installed by scripts/setup.sh; it is now).

    .venv/bin/python experiments/relax_cost/probe_torchsim_sevenn.py --n 16 --steps 20 --out results/probe_torchsim_sevenn.json
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import shlex
import sys
import time

import numpy as np
import torch


def vesin_per_system(positions, row_vector_cell, pbc, cutoff, system_idx):
    """`torchsim_nl`'s contract (edge index, system of each edge, unit shifts) from 0.3.0's vesin."""
    import torch_sim.neighbors as tsn

    n = int(system_idx.max()) + 1
    cells = row_vector_cell.reshape(n, 3, 3)
    counts = torch.bincount(system_idx, minlength=n)
    maps, systems, shifts, start = [], [], [], 0
    for b in range(n):
        k = int(counts[b])
        mapping, shift = tsn.vesin_nl_ts(positions[start:start + k], cells[b], True, cutoff)
        maps.append(mapping + start)
        systems.append(torch.full((mapping.shape[1],), b, dtype=torch.long))
        shifts.append(shift)
        start += k
    return torch.cat(maps, 1), torch.cat(systems), torch.cat(shifts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=16, help="crystals (every 10th of the built-in store)")
    p.add_argument("--steps", type=int, default=20, help="FIRE steps for both paths")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/probe_torchsim_sevenn.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import torch_sim as ts
    import torch_sim.neighbors as tsn

    tsn.torchsim_nl = vesin_per_system
    from sevenn.torchsim import SevenNetModel
    from sevenn.util import load_checkpoint

    from dosmatgen.data.store import DOSStore
    from dosmatgen.evaluate.mlff import get_calculator, relax
    from dosmatgen.io import atomic_save_json

    store = DOSStore("resources/builtin_dos.npz")
    atoms = []
    for i in range(0, 10 * args.n, 10):
        a = store[i].to_atoms()
        a.rattle(0.05, seed=1)
        a.set_cell(a.cell * 1.03, scale_atoms=True)
        atoms.append(a)
    model = SevenNetModel(model=load_checkpoint("7net-0").build_model(), modal=None, device="cpu")
    t0 = time.perf_counter()
    final = ts.optimize(system=atoms, model=model, optimizer=ts.frechet_cell_fire, max_steps=args.steps,
                        convergence_fn=ts.generate_force_convergence_fn(force_tol=0.05))
    batched_s = time.perf_counter() - t0
    calc = get_calculator("sevenn")
    t0 = time.perf_counter()
    ase = [relax(a, calc, fmax=0.05, steps=args.steps) for a in atoms]
    ase_s = time.perf_counter() - t0
    nat = np.bincount(final.system_idx.numpy())
    d_e = (final.energy.detach().numpy() - np.array([e for _, e, _ in ase])) / nat
    vol_b = np.abs(np.linalg.det(final.row_vector_cell.detach().numpy()))
    vol_a = np.array([a.get_volume() for a, _, _ in ase])
    result = {"command": " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]),
              "crystals": len(atoms), "atoms": int(nat.sum()), "fire_steps": args.steps, "threads": args.threads,
              "batched_seconds": round(batched_s, 2), "ase_seconds": round(ase_s, 2),
              "speed_ratio": round(ase_s / batched_s, 2),
              "max_abs_energy_diff_eV_per_atom": float(np.nanmax(np.abs(d_e))),
              "max_rel_volume_diff": float(np.nanmax(np.abs(vol_b / vol_a - 1))),
              "versions": {k: md.version(k) for k in ("torch", "torch-sim-atomistic", "sevenn", "vesin")},
              "note": "small probe under load (a nice-19 GPAW job on the same 2 cores); not a benchmark"}
    atomic_save_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
