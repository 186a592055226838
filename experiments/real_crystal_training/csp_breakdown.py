"""Where the geometry of ``csp_probe.py``'s crystals goes wrong (elements clamped, so every pair
has the target's species in the target's order): by cell size, the match at Table 2's tolerances
and at loose ones (stol 0.8, ltol 0.5, angle 15°), the Niggli-reduced cells' largest angle and
length errors and volume ratio; and two swaps that split the error between the channels: the
generated fractional coordinates in the target's lattice, and the target's coordinates in the
generated lattice (each matched against the target).

    .venv/bin/python experiments/real_crystal_training/csp_breakdown.py SAMPLES.npz [...] > breakdown.md

``SAMPLES.npz``: ``csp_probe.py --samples`` output. The swaps are a rough split: a generated cell
may be another choice of basis than the target's, which the coordinate swap does not undo.
"""

from __future__ import annotations

import sys

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.metrics import MATCHER_KWARGS
from dosmatgen.generate.generated import load_generated
from dosmatgen.paths import RESOURCES

LOOSE = {"stol": 0.8, "ltol": 0.5, "angle_tol": 15.0}
SIZES = ((1, 4), (5, 8), (9, 12), (13, 20))


def rows(path: str, store: DOSStore) -> list[tuple]:
    """(atoms, strict, loose, angle error °, length error, volume ratio, coords in target lattice,
    target coords in generated lattice) per buildable crystal."""
    strict, loose = StructureMatcher(**MATCHER_KWARGS), StructureMatcher(**LOOSE)
    out = []
    gen = load_generated(path)
    for (s, _), sid in zip(gen.structures(), gen.source_ids):
        if s is None:
            continue
        t = store[sid].to_structure()
        a, b = s.get_reduced_structure().lattice, t.get_reduced_structure().lattice
        out.append((len(t), strict.fit(s, t), loose.fit(s, t),
                    float(np.abs(np.sort(a.angles) - np.sort(b.angles)).max()),
                    float(np.abs(np.sort(a.abc) / np.sort(b.abc) - 1).max()), s.volume / t.volume,
                    strict.fit(Structure(t.lattice, t.species, s.frac_coords), t),
                    strict.fit(Structure(s.lattice, t.species, t.frac_coords), t)))
    return out


def main() -> None:
    store = DOSStore(RESOURCES / "builtin_dos.npz")
    print("| samples | atoms | crystals | match (Table 2) | loose match | median angle error ° | median length error % "
          "| median volume ratio | generated coords, target lattice | target coords, generated lattice |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        r = np.array(rows(path, store), dtype=float)
        for lo, hi in SIZES + ((1, 20),):
            m = r[(r[:, 0] >= lo) & (r[:, 0] <= hi)]
            if not len(m):
                continue
            print(f"| {path.rsplit('/', 1)[-1]} | {lo}-{hi} | {len(m)} | {m[:, 1].sum():.0f} | {m[:, 2].sum():.0f} | "
                  f"{np.median(m[:, 3]):.0f} | {100 * np.median(m[:, 4]):.0f} | {np.median(m[:, 5]):.2f} | "
                  f"{m[:, 6].sum():.0f} | {m[:, 7].sum():.0f} |")


if __name__ == "__main__":
    main()
