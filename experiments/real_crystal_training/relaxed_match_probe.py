"""Does an MLFF relaxation bring generated cells onto their targets? (issue 35, session 10)

The paper relaxes its generated crystals with an MLFF before it looks at them further (§3.1 Fig. 2,
§3.3's workflow); Table 2 matches them unrelaxed. Session 8 found the composition-matched real
crystals distorted (P1, angles 5-18° off) at about the right volume: near the target's basin or
not? For every generated crystal of a sample file whose reduced formula matches its target's (no
other can match: relaxing keeps the composition), this relaxes it with SevenNet '7net-0'
(``mlff_relax``, the relaxation of ``evaluate score --relaxed-match``: batched FIRE + Fréchet cell
filter, fmax 0.05 eV/Å, 200 steps) and matches it at Table 2's tolerances against the target, unrelaxed and relaxed.
Control: the targets themselves relaxed the same way, matched against the unrelaxed targets (the
force field keeps a real crystal in its basin: this must be ~100 %, or the relaxed column says
nothing).

    .venv/bin/python experiments/real_crystal_training/relaxed_match_probe.py SAMPLES.npz [SAMPLES.npz ...] > OUT.md

Baseline, ``--random SAMPLES.npz``: what the relaxation does alone. Every target of the sample file
gets a random cell of its own composition (the right atoms, always a composition match) at its own
volume: a cubic cell, sites uniform at random with no two atoms closer than 1.5 Å (seed 0), relaxed and
matched the same way. The generator's relaxed matches per composition-matched crystal are to be read
against this rate; ``--random --matched-only SAMPLES.npz`` does it on the composition-matched targets
alone, one row per target beside the generated crystal relaxed (the same targets, two geometries).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.metrics import MATCHER_KWARGS, StructureMatchRate
from dosmatgen.evaluate.relaxed_match import mlff_relax
from dosmatgen.generate import load_generated

STORE = "resources/builtin_dos.npz"


def matches(generated: list, targets: list) -> list[bool]:
    """Table 2's match per pair (no timeout); a ``None`` (unbuilt or blown up) is a miss."""
    return [o == "match" for o in StructureMatchRate(timeout_s=None).outcomes(generated, targets)]


def pairs_of(path: str, store: DOSStore) -> list[tuple]:
    """``(generated structure or None, target structure)`` for every crystal of a sample file."""
    generated = load_generated(path)
    return [(gen, store[sid].to_structure()) for sid, (gen, _) in zip(generated.source_ids, generated.structures())]


def main(paths: list[str]) -> None:
    store, relaxed = DOSStore(STORE), mlff_relax("sevenn")
    print("| samples | targets | composition-matched | struct. match, unrelaxed | struct. match, relaxed | "
          "relaxed vs relaxed target | relaxations dropped | control: relaxed targets matching their own "
          "unrelaxed cell | relax time, s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        t0 = time.time()
        pairs = pairs_of(path, store)
        same = [(g, t) for g, t in pairs if g is not None and g.composition.reduced_formula == t.composition.reduced_formula]
        gens, tgts = [g for g, _ in same], [t for _, t in same]
        gens_r, tgts_r = relaxed(gens), relaxed(tgts)
        before, after = matches(gens, tgts), matches(gens_r, tgts)
        both = matches(gens_r, [t or u for t, u in zip(tgts_r, tgts)])
        control = matches(tgts_r, tgts)
        n = len(pairs)
        print(f"| `{path.rsplit('/', 1)[-1]}` | {n} | {len(same)} | {sum(before)} ({100 * sum(before) / n:.1f} %) | "
              f"{sum(after)} ({100 * sum(after) / n:.1f} %) | {sum(both)} | {sum(g is None for g in gens_r)} | "
              f"{sum(control)} of {len(tgts)} | {time.time() - t0:.0f} |", flush=True)
    print(f"\nStructure match in % of all targets of the file (Table 2's denominator); MAE-free, "
          f"StructureMatcher {MATCHER_KWARGS}.")


def random_cell(target, rng: np.random.Generator, min_distance: float = 1.5):
    """A cubic cell of the target's volume holding its atoms at random sites, no pair closer than
    ``min_distance`` Å (periodic images included)."""
    from pymatgen.core import Lattice, Structure

    lattice = Lattice.cubic(target.volume ** (1 / 3))
    for _ in range(1000):
        s = Structure(lattice, target.species, rng.random((len(target), 3)))
        if len(s) == 1 or s.distance_matrix[np.triu_indices(len(s), 1)].min() >= min_distance:
            return s
    return s


def random_baseline(path: str, matched_only: bool = False) -> None:
    """``matched_only``: only the targets whose generated crystal has their composition, one row
    each beside the generated crystal's relaxed match (the same targets, two geometries)."""
    store, relaxed, rng = DOSStore(STORE), mlff_relax("sevenn"), np.random.default_rng(0)
    t0 = time.time()
    pairs = pairs_of(path, store)
    if matched_only:
        pairs = [(g, t) for g, t in pairs if g is not None
                 and g.composition.reduced_formula == t.composition.reduced_formula]
    targets = [t for _, t in pairs]
    cells = [random_cell(t, rng) for t in targets]
    before, after = matches(cells, targets), matches(relaxed(cells), targets)
    if matched_only:
        gen_after = matches(relaxed([g for g, _ in pairs]), targets)
        print("| target | atoms | generated, relaxed | random cell, unrelaxed | random cell, relaxed |\n|---|---|---|---|---|")
        for t, g, b, a in zip(targets, gen_after, before, after):
            print(f"| {t.composition.reduced_formula} | {len(t)} | {int(g)} | {int(b)} | {int(a)} |")
        print(f"\nThe {len(targets)} targets whose generated crystal has their composition: generated and relaxed "
              f"{sum(gen_after)} match; ", end="")
    print(f"random cells of each target's composition and volume (`{path.rsplit('/', 1)[-1]}`'s {len(targets)} "
          f"{'composition-matched ' if matched_only else ''}targets, seed 0): {sum(before)} match unrelaxed, "
          f"{sum(after)} after the SevenNet relaxation ({time.time() - t0:.0f} s).")


if __name__ == "__main__":
    np.seterr(all="ignore")
    if sys.argv[1] == "--random":
        random_baseline(sys.argv[-1], matched_only="--matched-only" in sys.argv)
    else:
        main(sys.argv[1:])
