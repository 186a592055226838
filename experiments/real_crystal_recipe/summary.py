"""The table of experiments/real_crystal_recipe/run.sh: one row per variant's metrics file.

    python experiments/real_crystal_recipe/summary.py results/real_crystal_recipe > summary.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from dosmatgen.evaluate.score import load_metrics

COLUMNS = [("validity", "validity %"), ("composition_match_rate", "comp. match %"),
           ("structure_match_rate", "struct. match %"), ("element_accuracy", "elem. acc. %"),
           ("homologue_only_miss", "wrong only by homologues %"), ("equal_dos_pairs_split", "equal-DOS pairs split %")]


def main(folder: Path) -> str:
    lines = ["| variant | n | " + " | ".join(c for _, c in COLUMNS) + " | MAE(ŷ_gen, y) / MAE(ŷ, y) |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for path in sorted(folder.glob("*.json")):
        m = load_metrics(path)
        met = m["metrics"]
        cells = [f"{met[k]['value']:.1f}" if met.get(k, {}).get("value") is not None else "–" for k, _ in COLUMNS]
        ratio = met["mae_gen_y"]["value"] / met["mae_yhat_y"]["value"]
        lines.append(f"| {path.stem} | {m['n_structures']} | " + " | ".join(cells) + f" | {ratio:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(Path(sys.argv[1])), end="")
