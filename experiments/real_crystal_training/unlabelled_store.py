"""Issue 35 candidate ``shift10pool``: the demo's training with the MP-20 pool's unlabelled real
structures added as unconditioned crystals (no DOS: ``has_dos`` False, so ``cond_mask`` is False
on every atom and they train the joint model as classifier-free guidance's unconditional part).

Why: the structure match of the real test crystals stays at 1-4 % for every model and sampler
measured, and the models regenerate even their own real training crystals at 3 % structure match
(``seen/``): the geometry of real crystals is learned from 375 of them. The pool holds 843 more
real MP-20 structures without a GPAW DOS; they cost no labelling and carry real geometries.

Leakage control: a pool structure is left out when it has the reduced formula of a validation or
test crystal of the split and pymatgen's ``StructureMatcher`` at Table 2's tolerances
(``dosmatgen.evaluate.metrics.MATCHER_KWARGS``) matches the two; the count of same-formula
structures kept (polymorphs) is reported. The committed split's validation and test parts are
unchanged; the pool structures join its training part only.

    .venv/bin/python experiments/real_crystal_training/unlabelled_store.py STORE SPLIT OUT_DIR [--builtin-elements]

writes ``OUT_DIR/store.npz`` (the store's records, then the pool's, ids ``pool-<material_id>``:
source ``other``), ``OUT_DIR/split.json`` and ``OUT_DIR/report.json``. ``--builtin-elements``
keeps only pool structures whose elements all occur in the store.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from ase.data import atomic_numbers
from pymatgen.analysis.structure_matcher import StructureMatcher

from dosmatgen.data.schema import MIN_DISTANCE, CrystalRecord
from dosmatgen.data.store import DOSStore, save_records
from dosmatgen.evaluate.metrics import MATCHER_KWARGS
from dosmatgen.io import atomic_save_json
from dosmatgen.paths import RESOURCES

PREFIX = "pool-"
POOL = RESOURCES / "mp20" / "mp20_pool.json"


def pool_record(row: dict) -> CrystalRecord:
    """The unlabelled record of one pool row (any element: no GPAW setup is needed without a DOS)."""
    return CrystalRecord(PREFIX + row["material_id"], [atomic_numbers[s] for s in row["species"]],
                         row["frac_coords"], row["lattice"], None,
                         {"source": "mp20-pool-unlabelled", "material_id": row["material_id"],
                          "formula": row.get("formula"), "spacegroup": row.get("spacegroup")})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("split")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--builtin-elements", action="store_true")
    args = p.parse_args()
    store, split = DOSStore(args.store), json.loads(Path(args.split).read_text())
    labelled = {store.provenance(i).get("material_id") for i in store.ids}
    elements = {int(z) for i in range(len(store)) for z in store.atomic_numbers(i)}
    held_out = [store[i] for i in split["val"] + split["test"]]
    by_formula: dict[str, list] = {}
    for rec in held_out:
        s = rec.to_structure()
        by_formula.setdefault(s.composition.reduced_formula, []).append(s)
    matcher = StructureMatcher(**MATCHER_KWARGS)
    kept: list[CrystalRecord] = []
    reasons: Counter = Counter()
    polymorphs = 0
    for row in json.loads(POOL.read_text())["structures"]:
        if row["material_id"] in labelled:
            reasons["labelled (in the store)"] += 1
            continue
        rec = pool_record(row)
        if rec.min_distance() < MIN_DISTANCE:
            reasons["overlapping atoms"] += 1
            continue
        if args.builtin_elements and not set(rec.atomic_numbers.tolist()) <= elements:
            reasons["element not in the store"] += 1
            continue
        s = rec.to_structure()
        same = by_formula.get(s.composition.reduced_formula, [])
        if any(matcher.fit(s, t) for t in same):
            reasons["matches a validation or test crystal"] += 1
            continue
        polymorphs += bool(same)
        kept.append(rec)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    save_records(args.out_dir / "store.npz", list(store) + kept,
                 meta={"made_by": "experiments/real_crystal_training/unlabelled_store.py", "base": args.store,
                       "unlabelled": len(kept)})
    split = {**split, "train": split["train"] + [r.structure_id for r in kept]}
    atomic_save_json(args.out_dir / "split.json", split)
    report = {"kept": len(kept), "kept_with_a_held_out_formula": polymorphs, "left_out": dict(reasons),
              "atoms": dict(sorted(Counter(r.num_atoms for r in kept).items())),
              "builtin_elements_only": args.builtin_elements}
    atomic_save_json(args.out_dir / "report.json", report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
