"""Best of K candidates per target, chosen by the surrogate (issue 35 probe).

For each target crystal, K candidates sampled from one model with sampling seeds 0..K-1
(``run.sh eval VARIANT SEED options@k``) are scored by ``evaluate score``; this picks, per target,
the valid candidate whose surrogate site DOS is closest to the target DOS (smallest
MAE(ŷ_gen, y), the quantity a user has at inference: the target DOS and the generated cell) and
reports the rates of the picked set beside the K = 1 rates and the oracle (any candidate matches).
The selection uses the same distance as the MAE ratio column, so that column is biased low here.

    .venv/bin/python experiments/real_crystal_training/best_of_k.py results/real_crystal_training [VARIANT] > best_of_k.md

VARIANT: the training variant of ``run.sh`` (default ``base``, today's demo model).
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from collections import Counter
from pathlib import Path

from pymatgen.core import Composition

#: Candidate counts reported (each must have sampling seeds 0..K-1 present).
KS: tuple[int, ...] = (1, 2, 4)


def _candidates(folder: Path, stem: str, k: int) -> list[list[dict[str, str]]] | None:
    paths = [folder / f"{stem}.per_structure.csv"] + [folder / "sampling_seeds" / f"{stem}_k{i}.per_structure.csv"
                                                      for i in range(1, k)]
    if not all(p.exists() for p in paths):
        return None
    return [list(csv.DictReader(open(p))) for p in paths]


def _valid(r: dict[str, str]) -> bool:
    return not r["build_reason"] and not r["validity_reason"]


def _mae(r: dict[str, str]) -> float:
    v = r["mae_gen_y"]
    return float(v) if v not in ("", "nan") else math.inf


def _pick(rows: list[dict[str, str]]) -> dict[str, str]:
    """The valid candidate with the smallest MAE(ŷ_gen, y); without one, the smallest MAE of all."""
    pool = [r for r in rows if _valid(r)] or rows
    return min(pool, key=_mae)


def _vote(rows: list[dict[str, str]]) -> dict[str, str]:
    """The most frequent reduced formula among the candidates (ties and its members: smallest MAE)."""
    forms = [Composition(r["formula_gen"]).reduced_formula if r["formula_gen"] else "" for r in rows]
    count = Counter(f for f in forms if f)
    if not count:
        return _pick(rows)
    top = max(count.values())
    return min((r for r, f in zip(rows, forms) if f and count[f] == top), key=_mae)


def _rates(picked: list[dict[str, str]], all_rows: list[list[dict[str, str]]]) -> dict[str, float]:
    n = len(picked)
    voted = [_vote([c[i] for c in all_rows]) for i in range(n)]
    scored = [r for r in picked if r["element_correct"] not in ("", "nan")]
    mae = [_mae(r) for r in picked if math.isfinite(_mae(r))]
    ref = [float(r["mae_yhat_y"]) for r in picked if r["mae_yhat_y"] not in ("", "nan")]
    return {"validity": 100 * sum(map(_valid, picked)) / n,
            "comp": 100 * sum(r["composition_match"] == "1" for r in picked) / n,
            "struct": 100 * sum(r["structure_match"] == "match" for r in picked) / n,
            "elem": 100 * sum(int(r["element_correct"]) for r in scored) / sum(int(r["n_atoms"]) for r in scored),
            "vote_comp": 100 * sum(r["composition_match"] == "1" for r in voted) / n,
            "oracle_comp": 100 * sum(any(c[i]["composition_match"] == "1" for c in all_rows) for i in range(n)) / n,
            "mae_ratio": statistics.mean(mae) / statistics.mean(ref)}


def main(folder: Path, variant: str = "base", recipe: str = "options", seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    head = ("| K | training seeds | validity % | comp. match % | struct. match % | elem. acc. % "
            "| comp. match, majority formula instead % | comp. match of any candidate % | MAE(ŷ_gen, y) / MAE(ŷ, y) (biased: selection uses it) |")
    lines = [head, "|---" * 9 + "|"]
    keys = ("validity", "comp", "struct", "elem", "vote_comp", "oracle_comp", "mae_ratio")
    for k in KS:
        per_seed = []
        for seed in seeds:
            cands = _candidates(folder, f"{variant}_s{seed}_{recipe}", k)
            if cands is None:
                continue
            picked = [_pick([c[i] for c in cands]) for i in range(len(cands[0]))]
            per_seed.append(_rates(picked, cands))
        if not per_seed:
            continue
        cells = []
        for key in keys:
            vals = [r[key] for r in per_seed]
            d = 3 if key == "mae_ratio" else 1
            cells.append(f"{statistics.mean(vals):.{d}f}" + (f" ± {statistics.stdev(vals):.{d}f}" if len(vals) > 1 else ""))
        lines.append(f"| {k} | {len(per_seed)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:3]), end="")
