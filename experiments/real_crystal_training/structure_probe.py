"""Why composition-matched real crystals miss the structure match (issue 35, session 8).

For every generated crystal of a sample file (``evaluate regenerate`` output) whose reduced formula
matches its target's, print the generated / target volume ratio, whether pymatgen's
``StructureMatcher`` matches them at the Table 2 tolerances (stol 0.5, angle_tol 10, ltol 0.3) and at
looser ones (stol 0.8, angle_tol 15, ltol 0.5), and both reduced cells (lengths, angles, space group
at symprec 0.1); then the counts and the median volume ratio.

    .venv/bin/python experiments/real_crystal_training/structure_probe.py SAMPLES.npz > OUT.md
"""

from __future__ import annotations

import sys

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.metrics import MATCHER_KWARGS, timed_fit
from dosmatgen.generate import load_generated

STORE = "resources/builtin_dos.npz"
LOOSE = {"stol": 0.8, "angle_tol": 15.0, "ltol": 0.5}


def cell(s: Structure) -> str:
    r = s.get_reduced_structure()
    abc, ang = np.round(r.lattice.abc, 2), np.round(r.lattice.angles, 1)
    return f"{abc.tolist()} Å, {ang.tolist()}°, {r.get_space_group_info(symprec=0.1)[0]}"


def main(path: str) -> None:
    store, generated = DOSStore(STORE), load_generated(path)
    strict, loose = StructureMatcher(**MATCHER_KWARGS), StructureMatcher(**LOOSE)
    print(f"# Composition-matched crystals of `{path}`\n")
    print("| formula | atoms | volume ratio | match (Table 2) | match (loose) | target cell | generated cell |")
    print("|---|---|---|---|---|---|---|")
    ratios, n_strict, n_loose = [], 0, 0
    for sid, (gen, _) in zip(generated.source_ids, generated.structures()):
        tgt = store[sid].to_structure()
        if gen is None or gen.composition.reduced_formula != tgt.composition.reduced_formula:
            continue
        ratio = gen.volume / tgt.volume
        s = timed_fit(gen, tgt, None, strict) == "match"
        lo = s or timed_fit(gen, tgt, None, loose) == "match"
        ratios.append(ratio)
        n_strict, n_loose = n_strict + s, n_loose + lo
        print(f"| {tgt.composition.reduced_formula} | {len(tgt)} | {ratio:.2f} | {int(s)} | {int(lo)} | "
              f"{cell(tgt)} | {cell(gen)} |")
    print(f"\n{len(ratios)} composition-matched; {n_strict} match at Table 2's tolerances, {n_loose} at the "
          f"loose ones; volume ratio median {np.median(ratios):.2f} (quartiles "
          f"{np.percentile(ratios, 25):.2f}-{np.percentile(ratios, 75):.2f}).")


if __name__ == "__main__":
    main(sys.argv[1])
