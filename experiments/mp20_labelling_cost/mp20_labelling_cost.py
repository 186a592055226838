"""How long the rest of the MP-20 labelling will take (issue 18), from the ledger's own seconds.

Fits the GPAW seconds of the labelled MP-20 cells (``seconds_dft`` of the ``done`` entries of
every ledger in ``--out``) two ways, a power law ``a * N**b`` in the atom count N and a mean of
seconds per atom over cells of at least 4 atoms, and sums each over the next candidates of the
builder's own order (:func:`dev_scripts.builtin.mp20.candidates`, cheapest first) until ``--target``
cells are labelled.  Failed cells are left out of the fits; they are few and their cost is the
timeout, so the estimate is a low one.  Writes every number and the exact command to ``--json``.

    .venv/bin/python experiments/mp20_labelling_cost/mp20_labelling_cost.py [--out resources/builtin] [--target 500]
        [--max-atoms 20] [--json results/mp20_labelling_cost.json]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from dosmatgen.data.store import read_ledger
from dosmatgen.io import atomic_save_json

if str(Path(__file__).resolve().parents[2]) not in sys.path:  # the builder's MP-20 source is in dev_scripts/
    sys.path.append(str(Path(__file__).resolve().parents[2]))
from dev_scripts.builtin import mp20  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="resources/builtin", help="the build folder (ledgers)")
    ap.add_argument("--pool", default=str(mp20.DEFAULT_POOL))
    ap.add_argument("--target", type=int, default=500, help="labelled MP-20 cells wanted")
    ap.add_argument("--max-atoms", type=int, default=20)
    ap.add_argument("--json", default="results/mp20_labelling_cost.json")
    args = ap.parse_args(argv)

    ledger = read_ledger(args.out)
    done = [e for sid, e in ledger.items() if sid.startswith("mp20-") and e.get("status") == "done"]
    n_failed = sum(1 for sid, e in ledger.items() if sid.startswith("mp20-") and e.get("status") == "failed")
    if len(done) < 10:
        print(f"only {len(done)} labelled MP-20 cells in {args.out}: too few to fit", file=sys.stderr)
        return 2
    natoms = np.array([e["natoms"] for e in done], dtype=float)
    seconds = np.array([e["seconds_dft"] for e in done], dtype=float)
    b, log_a = np.polyfit(np.log(natoms), np.log(seconds), 1)
    big = natoms >= 4
    per_atom = float((seconds[big] / natoms[big]).mean())

    cands, _ = mp20.candidates(args.pool, max_atoms=args.max_atoms)
    todo = np.array([c.num_atoms for c in cands if c.structure_id not in ledger], dtype=float)
    nxt = todo[:max(0, args.target - len(done))]
    power_h = float((np.exp(log_a) * nxt ** b).sum() / 3600)
    linear_h = float(nxt.sum() * per_atom / 3600)
    by_n = {int(n): {"cells": int((natoms == n).sum()), "mean_s": round(float(seconds[natoms == n].mean()), 1),
                     "median_s": round(float(np.median(seconds[natoms == n])), 1)} for n in sorted(set(natoms))}
    out = {
        "command": " ".join(["experiments/mp20_labelling_cost/mp20_labelling_cost.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "labelled": len(done), "failed": n_failed, "candidates": len(cands), "remaining": int(todo.size),
        "target": args.target, "next_cells": int(nxt.size), "next_max_atoms": int(nxt.max()) if nxt.size else 0,
        "fit_power": {"a_s": round(float(np.exp(log_a)), 2), "b": round(float(b), 3)},
        "mean_seconds_per_atom_n_ge_4": round(per_atom, 2),
        "next_core_hours": {"power_fit": round(power_h, 1), "per_atom": round(linear_h, 1)},
        "all_remaining_core_hours_per_atom": round(float(todo.sum() * per_atom / 3600), 1),
        "seconds_by_atoms": by_n,
    }
    atomic_save_json(args.json, out)
    print(f"{len(done)} labelled, {n_failed} failed, {todo.size} of {len(cands)} candidates left; "
          f"the next {nxt.size} (up to {out['next_max_atoms']} atoms): {min(power_h, linear_h):.0f}-"
          f"{max(power_h, linear_h):.0f} core-hours (fit {out['fit_power']['a_s']} s x N^{b:.2f}; "
          f"{per_atom:.1f} s per atom) -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
