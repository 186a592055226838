"""Does the generated geometry carry the period? (issue 35, candidate "the geometry's cue")

For each generated crystal of a sample file (``evaluate regenerate`` output: site k conditioned on
the target's site k), compare the generated nearest-neighbour distance of every site with the
target's, and, at the sites whose element came out as a group homologue of the right one, ask
which element the generated distance fits better under bond-length additivity: the right element
(expected distance = the target's) or the generated one (the target's + r_gen - r_right, atomic
radii from pymatgen). A cue a sampler could use needs the geometry's own error to be small against
the radius step between homologues and the right element to win clearly more often than half.

    .venv/bin/python experiments/real_crystal_training/geometry_cue.py SAMPLES.npz [...] > OUT.md
"""

from __future__ import annotations

import sys

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from dosmatgen.data.store import DOSStore

STORE = "resources/builtin_dos.npz"


def nearest_distances(numbers: np.ndarray, frac: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Distance from each site to its nearest neighbour, periodic images included (Å)."""
    s = Structure(Lattice(lattice), [int(z) for z in numbers], frac)
    cutoff = 2.0 * max(float(np.cbrt(max(s.volume, 1e-6))), 4.0)
    out = np.full(len(s), np.nan)
    for i, nbrs in enumerate(s.get_all_neighbors(cutoff)):
        if nbrs:
            out[i] = min(n.nn_distance for n in nbrs)
    return out


def radius(z: int) -> float:
    r = Element.from_Z(int(z)).atomic_radius
    return float(r) if r is not None else float("nan")


def probe(path: str, store: DOSStore) -> dict[str, float]:
    z = np.load(path, allow_pickle=True)
    ids = [str(i) for i in z["source_ids"]]
    recs = {r.structure_id: r for r in store.records(ids)}
    off = z["offsets"]
    geometry_error, radius_step, right_wins, volume_error = [], [], [], []
    for k, sid in enumerate(ids):
        rec = recs[sid]
        gen_z = z["atomic_numbers"][off[k]:off[k + 1]]
        tgt_z = np.asarray(rec.atomic_numbers)
        if len(gen_z) != len(tgt_z):
            continue
        d_gen = nearest_distances(gen_z, z["frac_coords"][off[k]:off[k + 1]], z["lattices"][k])
        d_tgt = nearest_distances(tgt_z, np.asarray(rec.frac_coords), np.asarray(rec.lattice))
        volume_error.append(abs(np.log(abs(np.linalg.det(z["lattices"][k])) / abs(np.linalg.det(np.asarray(rec.lattice))))))
        geometry_error.extend(np.abs(np.log(d_gen / d_tgt))[np.isfinite(d_gen / d_tgt)])
        for i, (g, t) in enumerate(zip(gen_z, tgt_z)):
            if g == t or Element.from_Z(int(g)).group != Element.from_Z(int(t)).group:
                continue
            step = radius(g) - radius(t)
            if not (np.isfinite(step) and np.isfinite(d_gen[i]) and np.isfinite(d_tgt[i])):
                continue
            radius_step.append(abs(np.log((d_tgt[i] + step) / d_tgt[i])))
            right_wins.append(abs(d_gen[i] - d_tgt[i]) < abs(d_gen[i] - (d_tgt[i] + step)))
    return {"crystals": len(volume_error), "median abs log(V_gen / V_tgt)": float(np.median(volume_error)),
            "median abs log(d_gen / d_tgt), all sites": float(np.median(geometry_error)),
            "homologue sites": len(right_wins),
            "median abs log(d_expected(gen) / d_tgt), the homologue step": float(np.median(radius_step)),
            "right element fits the generated distance better %": 100.0 * float(np.mean(right_wins))}


def main(paths: list[str]) -> None:
    store = DOSStore(STORE)
    rows = [(p, probe(p, store)) for p in paths]
    keys = list(rows[0][1])
    print("| sample | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for p, r in rows:
        print(f"| {p.rsplit('/', 1)[-1]} | " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                                                       for k in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
