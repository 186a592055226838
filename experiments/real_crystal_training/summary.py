"""The table of experiments/real_crystal_training/run.sh: each (variant, sampling recipe) with the
mean ± standard deviation over its training seeds, every seed's row, and the rates by cell size.

    .venv/bin/python experiments/real_crystal_training/summary.py results/real_crystal_training > summary.md
"""

from __future__ import annotations

import csv
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from dosmatgen.evaluate.score import load_metrics

COLUMNS = [("validity", "validity %"), ("composition_match_rate", "comp. match %"),
           ("structure_match_rate", "struct. match %"),
           ("structure_match_rate_relaxed", "struct. match after SevenNet relaxation %"),
           ("element_accuracy", "elem. acc. %"),
           ("homologue_only_miss", "wrong only by homologues %"), ("equal_dos_pairs_split", "equal-DOS pairs split %"),
           ("mae_ratio", "MAE(ŷ_gen, y) / MAE(ŷ, y)")]
#: Cell-size bins of the by-size table (atoms per cell, inclusive).
SIZE_BINS: tuple[tuple[int, int], ...] = ((1, 4), (5, 8), (9, 12), (13, 18))
NAME = re.compile(r"^(?P<variant>.+)_s(?P<seed>\d+)_(?P<recipe>[a-z0-9]+)$")


def result_row(path: Path) -> dict[str, float]:
    met = load_metrics(path)["metrics"]
    row = {k: met[k]["value"] for k, _ in COLUMNS[:-1] if met.get(k, {}).get("value") is not None}
    row["mae_ratio"] = met["mae_gen_y"]["value"] / met["mae_yhat_y"]["value"]
    return row


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _by_size(paths: list[Path]) -> dict[tuple[int, int], dict[str, float]]:
    """Validity, composition match and element accuracy (%) per size bin, pooled over ``paths``."""
    pooled: dict[tuple[int, int], list[dict[str, str]]] = defaultdict(list)
    for path in paths:
        for r in csv.DictReader(open(path.with_suffix(".per_structure.csv"))):
            n = int(r["n_atoms"])
            pooled[next(b for b in SIZE_BINS if b[0] <= n <= b[1])].append(r)
    out = {}
    for b, rows in sorted(pooled.items()):
        valid = [not r["build_reason"] and not r["validity_reason"] for r in rows]
        acc = [float(r["element_accuracy"]) for r in rows if r["element_accuracy"] not in ("", "nan")]
        out[b] = {"n": len(rows) / len(paths), "validity": 100 * sum(valid) / len(rows),
                  "comp": 100 * sum(r["composition_match"] == "1" for r in rows) / len(rows),
                  "elem": statistics.mean(acc) if acc else float("nan")}
    return out


def main(folder: Path) -> str:
    groups: dict[tuple[str, str], dict[int, Path]] = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        m = NAME.match(path.stem)
        if m:
            groups[(m["variant"], m["recipe"])][int(m["seed"])] = path
    head = "| variant | sampling | seeds | " + " | ".join(c for _, c in COLUMNS) + " |"
    rule = "|---" * (len(COLUMNS) + 3) + "|"
    mean_lines, seed_lines = [head, rule], [head, rule]
    for (variant, recipe), by_seed in sorted(groups.items()):
        rows = {s: result_row(p) for s, p in sorted(by_seed.items())}
        cells = [_cell([r[k] for r in rows.values() if k in r], 3 if k == "mae_ratio" else 1) for k, _ in COLUMNS]
        mean_lines.append(f"| {variant} | {recipe} | {','.join(map(str, rows))} | " + " | ".join(cells) + " |")
        for s, r in rows.items():
            seed_lines.append(f"| {variant} | {recipe} | {s} | " + " | ".join(
                _cell([r[k]] if k in r else [], 3 if k == "mae_ratio" else 1) for k, _ in COLUMNS) + " |")
    size_lines = ["| variant | sampling | " + " | ".join(f"{a}-{b} atoms (n, valid %, comp %, elem %)"
                                                      for a, b in SIZE_BINS) + " |", "|---" * (len(SIZE_BINS) + 2) + "|"]
    for (variant, recipe), by_seed in sorted(groups.items()):
        sizes = _by_size(list(by_seed.values()))
        size_lines.append(f"| {variant} | {recipe} | " + " | ".join(
            (f"{v['n']:.0f}, {v['validity']:.0f}, {v['comp']:.0f}, {v['elem']:.0f}" if (v := sizes.get(b)) else "–")
            for b in SIZE_BINS) + " |")
    return ("## Mean ± standard deviation over training seeds\n\n" + "\n".join(mean_lines)
            + "\n\n## Every seed\n\n" + "\n".join(seed_lines)
            + "\n\n## By cell size (pooled over the seeds)\n\n" + "\n".join(size_lines) + "\n")


if __name__ == "__main__":
    print(main(Path(sys.argv[1])), end="")
