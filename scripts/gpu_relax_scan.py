"""Batched FIRE relaxation on one device at growing batch sizes: seconds per FIRE step, crystal-steps
and atom-steps per second, so that a plan for ~70k relaxations can see where the device saturates.

    python scripts/gpu_relax_scan.py --device cuda --sizes 6 16 64 256 --out relax_scan.json

Each size is :func:`dosmatgen.plan.measure_relax` (built-in store crystals and their doubled
supercells, 1/5/15 steps, unreachable fmax, best of two) with SevenNet 7net-0 through torch-sim.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dosmatgen.data.store import load_records
from dosmatgen.io import atomic_save_json
from dosmatgen.plan import measure_relax


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="resources/builtin_dos.npz")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--mlff", default="sevenn")
    ap.add_argument("--sizes", type=int, nargs="+", default=[6, 16, 64, 256])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if min(args.sizes) < 1:
        ap.error(f"--sizes must be >= 1, got {args.sizes}")
    if not Path(args.store).is_file():
        ap.error(f"--store {args.store} does not exist")
    records = load_records(args.store)
    mean_atoms = sum(r.num_atoms for r in records) / len(records)
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        per_crystal, per_crystal_step, per_atom_step = measure_relax("batched", records, args.mlff, args.device, n)
        atoms = sum(records[k % len(records)].num_atoms for k in range(n))
        step_s = n * per_crystal_step + atoms * per_atom_step
        rows.append({"n_crystals": n, "atoms": atoms, "s_per_crystal": per_crystal,
                     "s_per_crystal_step": per_crystal_step, "s_per_atom_step": per_atom_step,
                     "s_per_batch_step": step_s, "crystal_steps_per_s": n / step_s if step_s > 0 else None,
                     "wall_s": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
    atomic_save_json(args.out, {"device": args.device, "mlff": args.mlff, "store": args.store,
                                "mean_atoms_of_store": mean_atoms, "rows": rows})


if __name__ == "__main__":
    main()
