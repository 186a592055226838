"""Foreign targets on the model's scale (issue 36): the Materials Project recipe's site DOS of Si
(mp-149) and bcc Fe (mp-13) against our GPAW engine's on the same structures, before and after
:func:`dosmatgen.normalise_to_training`, from the curves recorded in results/mp_vs_gpaw_Si_Fe.json.

    .venv/bin/python experiments/foreign_target_normalisation/measure.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import dosmatgen as dm
from dosmatgen.io import atomic_save_json, atomic_write

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "results" / "foreign_target_normalisation"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def primitive_cell(species: str, a: float):
    """The Materials Project's primitive cell of the case (lattice length ``a`` as recorded):
    diamond Si (fcc, 60°) or bcc Fe (109.47°)."""
    from pymatgen.core import Lattice, Structure

    if species == "Si":
        return Structure(Lattice.from_parameters(a, a, a, 60, 60, 60), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    angle = float(np.degrees(np.arccos(-1 / 3)))
    return Structure(Lattice.from_parameters(a, a, a, angle, angle, angle), ["Fe"], [[0, 0, 0]])


def main() -> None:
    recorded = json.loads((REPO / "results" / "mp_vs_gpaw_Si_Fe.json").read_text())
    model = dm.load_model("demo")
    rows = []
    for case in recorded["cases"]:
        gpaw = np.asarray(case["curves_site0"]["gpaw"])
        mp = dm.Target(np.asarray(case["curves_site0"]["mp_recipe"])[None], "mp recipe")
        z = {"Si": 14, "Fe": 26}[case["site0"]["species"]]
        after = dm.normalise_to_training(mp, [z]).dos[0]
        # the surrogate's site DOS of the same crystal: its error against each version of the target
        pred = dm.predict_site_dos(model, primitive_cell(case["site0"]["species"], case["lattice_abc_A"][0]))[0]
        rows.append({"site": f"{case['label']} ({case['mp_id']}) site 0",
                     "electrons below E_F: GPAW": dm.api.electrons_below_fermi(gpaw[None])[0],
                     "MP before": dm.api.electrons_below_fermi(mp.dos)[0],
                     "MP after": dm.api.electrons_below_fermi(after[None])[0],
                     "training mean": dm.api.training_electrons_below_fermi()[z],
                     "MAE to GPAW before": float(np.abs(mp.dos[0] - gpaw).mean()),
                     "MAE to GPAW after": float(np.abs(after - gpaw).mean()),
                     "cosine to GPAW before": cosine(mp.dos[0], gpaw), "cosine to GPAW after": cosine(after, gpaw),
                     "surrogate MAE to MP before": float(np.abs(pred - mp.dos[0]).mean()),
                     "surrogate MAE to MP after": float(np.abs(pred - after).mean()),
                     "surrogate MAE to GPAW": float(np.abs(pred - gpaw).mean())})
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_save_json(OUT / "si_fe.json", {"command": "python experiments/foreign_target_normalisation/measure.py",
                                          "source": "results/mp_vs_gpaw_Si_Fe.json", "rows": rows})
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] if isinstance(r[c], str) else f"{r[c]:.3f}" for c in cols) + " |" for r in rows]
    with atomic_write(OUT / "si_fe.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
