"""Rates file from what `dosmatgen plan --save-rates` printed on another machine (when the run
stopped before it could save the file), plus a batched-relaxation scan's JSON lines, plus a rates
file from this machine for the units the other host did not measure.

    python scripts/rates_from_plan_log.py --log results/plan/h200/plan_measure.log \\
        --scan results/plan/h200/relax_scan.log --fill results/plan/rates_cpu_demo_idle_screen.json \\
        --out results/plan/rates_paper_h200.json

Numbers are read as printed (3 significant digits or so); every unit's `how` says where it came
from. The scan row with the most crystals gives the batched-relaxation units.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from dosmatgen.io import atomic_save_json
from dosmatgen.plan import Rates

NUM = r"([0-9.]+(?:e-?[0-9]+)?)"
PATTERNS = [  # (regex on one printed line, [(unit, group, scale)])
    (rf"train (\w+): {NUM} s/step, {NUM} ms per validation crystal",
     lambda m: [(f"train_step:{m[1]}", float(m[2])), (f"val_crystal:{m[1]}", float(m[3]) * 1e-3)]),
    (rf"sample (\w+): {NUM} s per step of a (\d+)-crystal chunk",
     lambda m: [(f"sample_chunk_step:{m[1]}", float(m[2]))]),
    (rf"surrogate {NUM} ms/crystal", lambda m: [("surrogate_crystal", float(m[1]) * 1e-3)]),
    (rf"relax ase: {NUM} s to start (\d+) worker processes", lambda m: [("relax_pool:ase", float(m[1]))]),
    (rf"relax (\w+): {NUM} ms per crystal-step \+ {NUM} ms per atom-step \+ {NUM} s per crystal",
     lambda m: [(f"relax_crystal_step:{m[1]}", float(m[2]) * 1e-3), (f"relax_atom_step:{m[1]}", float(m[3]) * 1e-3),
                (f"relax_crystal:{m[1]}", float(m[4]))]),
]


def parse_plan_log(text: str, source: str) -> Rates:
    """Units printed by :func:`dosmatgen.plan.measure_rates`'s report lines in ``text``."""
    rates = Rates()
    for line in text.splitlines():
        for pattern, units in PATTERNS:
            m = re.search(pattern, line)
            if m:
                for unit, value in units(m):
                    rates.set(unit, value, f"{source}: printed '{line.strip()}'")
    return rates


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", required=True)
    ap.add_argument("--scan", default=None, help="JSON lines printed by scripts/gpu_relax_scan.py")
    ap.add_argument("--fill", default=None, help="rates file for the units the log lacks")
    ap.add_argument("--environment", default="{}", help="JSON object recorded as the rates' environment")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    for path in (args.log, args.scan, args.fill):
        if path and not Path(path).is_file():
            ap.error(f"{path} does not exist")
    rates = parse_plan_log(Path(args.log).read_text(), args.log)
    if args.scan:
        rows = [json.loads(l) for l in Path(args.scan).read_text().splitlines() if l.startswith("{")]
        best = max(rows, key=lambda r: r["n_crystals"])
        how = f"{args.scan}: batched FIRE fit at {best['n_crystals']} crystals ({best['atoms']} atoms)"
        rates.set("relax_crystal:batched", best["s_per_crystal"], how)
        rates.set("relax_crystal_step:batched", best["s_per_crystal_step"], how)
        rates.set("relax_atom_step:batched", best["s_per_atom_step"], how)
    rates.environment = json.loads(args.environment)
    if args.fill:
        other = Rates.load(args.fill)
        for unit, value in other.seconds.items():
            if unit not in rates.seconds:
                rates.set(unit, value, f"not measured on the host; from {args.fill}: {other.how.get(unit, '')}",
                          lower_bound=unit in other.lower_bounds)
    atomic_save_json(args.out, rates.to_dict())
    print(f"{len(rates.seconds)} units -> {args.out}")


if __name__ == "__main__":
    main()
