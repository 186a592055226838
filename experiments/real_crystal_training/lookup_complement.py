"""Would the DOS lookup add to the model's elements? (issue 35, a candidate not built)

Per atom of the real test crystals of a sample file, the model's element (``evaluate regenerate``
output, atom i conditioned on the target's atom i) against the DOS lookup's (Table 2's baseline,
:mod:`dosmatgen.evaluate.lookup`: the element of the nearest training atom in L1 over the
standardised site DOS). ``either`` is the element accuracy of an oracle that takes whichever of the
two is right: the ceiling of any mixture of the two (e.g. the lookup as a prior in the sampler).
A mixture can only reach towards it where it knows which to trust; the second table splits the
atoms by the lookup's L1 distance (quintiles of the sample's atoms, pooled over the files) and
gives both accuracies in each: the lookup would have to beat the model where it is close.

    .venv/bin/python experiments/real_crystal_training/lookup_complement.py SPLIT STANDARDISER SAMPLES.npz [...] > OUT.md
"""

from __future__ import annotations

import json
import sys

import numpy as np

from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.lookup import nearest_neighbours, training_atoms

STORE = "resources/builtin_dos.npz"


def main(split_path: str, standardiser_path: str, samples: list[str]) -> None:
    store = DOSStore(STORE)
    split = json.loads(open(split_path).read())
    std = DOSStandardiser.load(standardiser_path)
    ref_dos, ref_z, _ = training_atoms(store.records(split["train"]))
    ref = std.transform(ref_dos)
    print("| sample | atoms | model % | lookup % | either % | model right, lookup wrong % | lookup right, model wrong % |")
    print("|---|---|---|---|---|---|---|")
    pooled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for path in samples:
        z = np.load(path, allow_pickle=True)
        off = z["offsets"]
        recs = store.records([str(i) for i in z["source_ids"]])
        target = np.concatenate([np.asarray(r.atomic_numbers) for r in recs])
        gen = np.asarray(z["atomic_numbers"][:off[-1]])
        idx, dist = nearest_neighbours(std.transform(np.concatenate([r.dos for r in recs])), ref)
        look = ref_z[idx]
        m, k = gen == target, look == target
        pooled.append((m, k, dist))
        pct = lambda a: 100.0 * float(np.mean(a))  # noqa: E731
        print(f"| {path.rsplit('/', 1)[-1]} | {len(target)} | {pct(m):.1f} | {pct(k):.1f} | {pct(m | k):.1f} | "
              f"{pct(m & ~k):.1f} | {pct(k & ~m):.1f} |")
    by_distance(pooled)


def by_distance(pooled: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Model and lookup accuracy by quintile of the lookup's distance, pooled over the files."""
    m, k, d = (np.concatenate(x) for x in zip(*pooled))
    edges = np.quantile(d, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    print("\n| lookup L1 distance quintile | atoms | model % | lookup % |")
    print("|---|---|---|---|")
    for q in range(5):
        sel = (d >= edges[q]) & ((d < edges[q + 1]) if q < 4 else (d <= edges[q + 1]))
        print(f"| {q + 1} ({edges[q]:.0f}-{edges[q + 1]:.0f}) | {int(sel.sum())} | {100 * m[sel].mean():.1f} | "
              f"{100 * k[sel].mean():.1f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
