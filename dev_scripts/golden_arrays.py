"""Reduce one command's sampling output to the arrays the golden files compare (issue 33).

    python dev_scripts/golden_arrays.py regen  GENERATED.npz OUT.npz   # evaluate regenerate
    python dev_scripts/golden_arrays.py study  STUDY_DIR     OUT.npz   # dosmatgen studies (CIFs)
    python dev_scripts/golden_arrays.py sample SAMPLE_DIR    OUT.npz   # dosmatgen sample (extxyz)

Every kind becomes ``ids`` (str), ``offsets``, ``atomic_numbers``, ``frac_coords``, ``lattices``;
a study also keeps its per-candidate surrogate scores (``dos_mae``; NaN where not scored).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def _pack(ids, crystals, **extra) -> dict:
    counts = [len(z) for z, _, _ in crystals]
    return {"ids": np.array(ids, dtype=str), "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "atomic_numbers": np.concatenate([z for z, _, _ in crystals]).astype(np.int64),
            "frac_coords": np.concatenate([x for _, x, _ in crystals]).astype(np.float64),
            "lattices": np.stack([lat for _, _, lat in crystals]).astype(np.float64), **extra}


def from_regen(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        off = z["offsets"]
        crystals = [(z["atomic_numbers"][a:b], z["frac_coords"][a:b], z["lattices"][i])
                    for i, (a, b) in enumerate(zip(off[:-1], off[1:]))]
        return _pack([str(s) for s in z["source_ids"]], crystals)


def from_study(folder: Path) -> dict:
    from pymatgen.core import Structure

    rows = list(csv.DictReader(open(folder / "candidates.csv")))
    ids, crystals, mae = [], [], []
    for r in rows:
        hits = list((folder / "cifs").glob(f"*/{r['candidate_id']}.cif"))
        if not hits:
            continue
        s = Structure.from_file(str(hits[0]))
        ids.append(r["candidate_id"])
        crystals.append((np.array([site.specie.Z for site in s]), s.frac_coords, s.lattice.matrix))
        mae.append(float(r["dos_mae"]) if r.get("dos_mae") else np.nan)
    return _pack(ids, crystals, dos_mae=np.array(mae))


def from_sample(folder: Path) -> dict:
    from ase.io import read

    frames = read(str(folder / "structures.extxyz"), index=":")
    return _pack([a.info["structure_id"] for a in frames],
                 [(a.numbers, a.get_scaled_positions(wrap=False), a.cell.array) for a in frames])


if __name__ == "__main__":
    kind, src, dst = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    arrays = {"regen": from_regen, "study": from_study, "sample": from_sample}[kind](src)
    np.savez_compressed(dst, **arrays)
