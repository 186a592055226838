"""Sampling recipes across sampling seeds (issue 35): one sampling seed is one noise stream shared
by every model, so a recipe comparison made with it alone can be that stream's luck. This table
puts ``run.sh``'s ``options`` (tie 0.05, 200 steps), ``tie10`` (tie 0.1), ``steps1000`` (1,000
steps), ``tt0`` (type temperature 0), ``tt0tie10`` (both changes), ``tt0c3`` (tt0 with the
coordinate corrector at step_lr 3e-6), ``tt0g05`` (tt0 with geometry temperature 0.5) and
``tt0c3g05`` (both) rows, the ``final`` models
(the base trainings' end-of-training weights instead of the validation-best) and the ``shift4`` /
``shift10`` models (trained with ``dos_shift`` 4 / 10) side by side over
every sampling seed present: the
real crystals alone (``demo375/``, seeds K > 0 in ``sampling_seeds/``) and Table 2's protocol, the whole test split
(``demo375/full_split/``, ``run.sh eval ... all``).

    .venv/bin/python experiments/real_crystal_training/seeds_summary.py results/real_crystal_training/demo375 > .../sampling_seeds.md
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from dosmatgen.evaluate.score import load_metrics
from summary import result_row

RECIPES = {"options": "tie 0.05, 200 steps", "tie10": "tie 0.1, 200 steps", "steps1000": "tie 0.05, 1,000 steps",
           "tt0": "tie 0.05, 200 steps, type temperature 0", "tt0tie10": "tie 0.1, 200 steps, type temperature 0",
           "tt0c3": "tie 0.05, 200 steps, type temperature 0, corrector 3e-6",
           "tt0g05": "tie 0.05, 200 steps, type temperature 0, geometry temperature 0.5",
           "tt0g025": "tie 0.05, 200 steps, type temperature 0, geometry temperature 0.25",
           "tt0c3g05": "tie 0.05, 200 steps, type temperature 0, corrector 3e-6, geometry temperature 0.5"}
WEIGHTS = {"base": "", "final": "end-of-training weights, ", "shift4": "trained with DOS shifts (dos_shift 4), ",
           "shift10": "trained with DOS shifts (dos_shift 10), ",
           "shift10wd": "trained with DOS shifts (dos_shift 10) and weight decay 1e-4, "}
NAME = re.compile(rf"^(?P<weights>{'|'.join(WEIGHTS)})_s(?P<model>\d+)_(?P<recipe>{'|'.join(RECIPES)})(?:_k(?P<k>\d+))?$")
KEYS = (("composition_match_rate", "comp. match %"), ("element_accuracy", "elem. acc. %"),
        ("validity", "validity %"), ("structure_match_rate", "struct. match %"))


def _runs(folder: Path) -> dict[str, dict[tuple[int, int], Path]]:
    """row label -> {(training seed, sampling seed): result file} in ``folder`` and its sampling_seeds/."""
    runs: dict[str, dict[tuple[int, int], Path]] = defaultdict(dict)
    for path in list(folder.glob("*.json")) + list((folder / "sampling_seeds").glob("*.json")):
        if m := NAME.match(path.stem):
            runs[WEIGHTS[m["weights"]] + RECIPES[m["recipe"]]][(int(m["model"]), int(m["k"] or 0))] = path
    return runs


def _by_source(path: Path) -> dict[str, dict[str, float]]:
    """Composition match and element accuracy (%) per source, as ``evaluate score`` recorded them
    (``by_source`` of the metrics file: element accuracy pooled over atoms, as Table 2)."""
    return {src: {"comp": part["metrics"]["composition_match_rate"]["value"],
                  "elem": part["metrics"]["element_accuracy"]["value"]}
            for src, part in load_metrics(path)["by_source"].items()}


def main(folder: Path) -> str:
    lines = ["## 100 real test crystals, 3 training seeds × sampling seeds", "",
             "| recipe | sampling seed | models | " + " | ".join(c for _, c in KEYS) + " |", "|---" * (len(KEYS) + 3) + "|"]
    for label, runs in sorted(_runs(folder).items()):
        rows = {key: result_row(path) for key, path in runs.items()}
        for k in sorted({k for _, k in rows}):
            sel = [v for (_, kk), v in sorted(rows.items()) if kk == k]
            lines.append(f"| {label} | {k} | {len(sel)} | " + " | ".join(
                f"{statistics.mean(v[key] for v in sel):.1f}" for key, _ in KEYS) + " |")
        lines.append(f"| {label} | all | {len(rows)} runs | " + " | ".join(
            f"**{statistics.mean(v[key] for v in rows.values()):.1f}**" for key, _ in KEYS) + " |")
    lines += ["", "## Table 2's protocol: the demo model (seed 0) on the whole test split (406), one thread", "",
              "| recipe | sampling seed | comp. match % | elem. acc. % | real comp. % | real elem. % | prototypes comp. % | prototypes elem. % |",
              "|---|---|---|---|---|---|---|---|"]
    for label, runs in sorted(_runs(folder / "full_split").items()):
        for (_, k), path in sorted(runs.items()):
            v, src = result_row(path), _by_source(path)
            lines.append(f"| {label} | {k} | {v['composition_match_rate']:.1f} | {v['element_accuracy']:.1f} | "
                         f"{src['mp20']['comp']:.1f} | {src['mp20']['elem']:.1f} | "
                         f"{src['prototypes']['comp']:.1f} | {src['prototypes']['elem']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(Path(sys.argv[1])), end="")
