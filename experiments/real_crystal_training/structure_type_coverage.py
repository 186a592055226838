"""How many real test crystals have a structure type (pymatgen ``StructureMatcher.fit_anonymous``
on primitive cells, pymatgen's default tolerances, stricter than Table 2's; any relabelling of
the elements) among the training
crystals of each kind: the labelled real ones, the MP-20 pool's unlabelled ones (``shift10pool``)
and the prototypes. A generator can only place a crystal of a type it has seen; this counts them.

    .venv/bin/python experiments/real_crystal_training/structure_type_coverage.py POOL_DIR > coverage.md

``POOL_DIR``: what ``unlabelled_store.py`` wrote (its ``store.npz`` and ``split.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pymatgen.analysis.structure_matcher import StructureMatcher

from dosmatgen.data.store import DOSStore

KINDS = {"labelled real (mp20-)": "mp20-", "unlabelled pool (pool-)": "pool-", "prototypes (builtin-)": "builtin-"}


def type_key(s) -> tuple:
    """Atoms and the reduced composition's multiplicities: two cells of one type share it."""
    return len(s), tuple(sorted(s.composition.reduced_composition.as_dict().values()))


def main() -> None:
    pool = Path(sys.argv[1])
    store, split = DOSStore(pool / "store.npz"), json.loads((pool / "split.json").read_text())
    matcher = StructureMatcher()
    prim = {i: store[i].to_structure().get_primitive_structure() for i in split["train"] + split["test"]}
    by_kind = {kind: {} for kind in KINDS}
    for kind, prefix in KINDS.items():
        for i in split["train"]:
            if i.startswith(prefix):
                by_kind[kind].setdefault(type_key(prim[i]), []).append(prim[i])
    test = [i for i in split["test"] if i.startswith("mp20-")]
    hits = {kind: set() for kind in KINDS}
    for i in test:
        for kind, groups in by_kind.items():
            if any(matcher.fit_anonymous(prim[i], t) for t in groups.get(type_key(prim[i]), [])):
                hits[kind].add(i)
    labelled = hits["labelled real (mp20-)"] | hits["prototypes (builtin-)"]
    print(f"# Structure types of the {len(test)} real test crystals among the training crystals\n")
    print("`" + " ".join(["structure_type_coverage.py", str(pool)]) + "`\n")
    print("| training crystals | count | test crystals whose type they hold |\n|---|---|---|")
    for kind, prefix in KINDS.items():
        n = sum(i.startswith(prefix) for i in split["train"])
        print(f"| {kind} | {n} | {len(hits[kind])} |")
    print(f"| labelled real or prototypes (the demo's training) | | {len(labelled)} |")
    print(f"| any of the three (shift10pool's training) | | {len(labelled | hits['unlabelled pool (pool-)'])} |")


if __name__ == "__main__":
    main()
