"""Batched (torch-sim) vs one-at-a-time (ASE) relaxation of the same generated crystals, in one run
(issue 17): both through `dosmatgen.evaluate.formation.compute_formation_energies` with the same
MLFF, FIRE settings, elemental references and threads; per-crystal differences of relaxed E_f
(eV/atom) and final volume, the speed ratio, and the crystals each path dropped.

    .venv/bin/python experiments/relax_cost/relax_side_by_side.py --generated work/demo/generated/cfg_T1000.npz \
        --refs work/demo/formation/elemental_refs_sevenn.json --steps 60 --out results/relax_side_by_side
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import shlex
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generated", required=True, help="generated-structure file (evaluate regenerate)")
    p.add_argument("--refs", required=True, help="elemental-reference cache to use for both paths (copied)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--fmax", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mlff", default="sevenn")
    p.add_argument("--max-atoms", type=int, default=None)
    p.add_argument("--note", default="the machine was shared (a nice-19 GPAW labelling job and other work), "
                   "which slows both paths", help="the conditions of the run, recorded in the output")
    p.add_argument("--ase-block", type=int, default=10, help="one-at-a-time path: crystals per timed, kept block")
    p.add_argument("--out", default="results/relax_side_by_side", help="writes OUT.json and OUT.md")
    p.add_argument("--work", default="work/relax_side_by_side", help="each path's formation output and time "
                   "(a rerun reuses a finished path)")
    args = p.parse_args()
    import torch

    from dosmatgen.evaluate.formation import FormationItem, compute_formation_energies
    from dosmatgen.generate.generated import load_generated
    from dosmatgen.io import atomic_save_json, atomic_write

    torch.set_num_threads(args.threads)
    gen = load_generated(args.generated)
    n = min(args.limit, len(gen))
    items = []
    for i in range(n):
        z, x, lat = gen.item(i)
        items.append(FormationItem(f"{i:06d}", gen.source_ids[i], np.asarray(z), np.asarray(x), np.asarray(lat)))
    runs, seconds = {}, {}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for relaxer in ("batched", "ase"):
        timing = work / f"{relaxer}.seconds.json"
        if timing.exists() and (work / f"{relaxer}.json").exists():  # finished earlier: reuse (resumable)
            seconds[relaxer] = json.loads(timing.read_text())["seconds"]
            runs[relaxer] = json.loads((work / f"{relaxer}.json").read_text())
            continue
        refs = work / f"refs_{relaxer}.json"
        if not refs.exists():
            shutil.copy(args.refs, refs)
        # batched: one batch of all crystals; ase: blocks of --ase-block crystals, each timed and kept,
        # so an interrupted one-at-a-time run resumes (each block re-creates its calculator: ~1 s)
        size = len(items) if relaxer == "batched" else args.ase_block
        rows, spent, loads = [], 0.0, []
        for k in range(0, len(items), size):
            part, part_t = work / f"{relaxer}_{k:04d}.json", work / f"{relaxer}_{k:04d}.seconds.json"
            if not (part.exists() and part_t.exists()):
                t0 = time.perf_counter()
                compute_formation_energies(
                    items[k:k + size], part, mlff=args.mlff, workers=args.threads, fmax=args.fmax, steps=args.steps,
                    refs_cache=refs, relaxer=relaxer, max_atoms=args.max_atoms, progress=True,
                    input_name=args.generated, chunk_size=size)
                atomic_save_json(part_t, {"seconds": time.perf_counter() - t0, "loadavg_after": os.getloadavg()})
            rows += json.loads(part.read_text())["rows"]
            spent += json.loads(part_t.read_text())["seconds"]
            loads.append(json.loads(part_t.read_text())["loadavg_after"])
        runs[relaxer] = {"rows": rows, "status_counts": dict(Counter(r["status"] for r in rows))}
        seconds[relaxer] = spent
        atomic_save_json(work / f"{relaxer}.json", runs[relaxer])
        atomic_save_json(timing, {"seconds": spent, "loadavg_after_each_block": loads})
    rows_b, rows_a = runs["batched"]["rows"], runs["ase"]["rows"]
    both = [(b, a) for b, a in zip(rows_b, rows_a) if b["ef_relaxed"] is not None and a["ef_relaxed"] is not None]
    d_ef = np.array([b["ef_relaxed"] - a["ef_relaxed"] for b, a in both])
    d_ef0 = np.array([b["ef_unrelaxed"] - a["ef_unrelaxed"] for b, a in both])
    d_vol = np.array([b["volume_ratio"] / a["volume_ratio"] - 1 for b, a in both])
    relaxed = sum(r["relax_status"] is not None for r in rows_a)
    conv = {k: sum(bool(r["converged"]) for r in runs[k]["rows"]) for k in runs}
    other = {"ase": rows_b, "batched": rows_a}
    dropped = {k: [{"id": r["id"], "formula": r["formula"], "relax_status": r["relax_status"], "status": r["status"],
                    "ef_unrelaxed": r["ef_unrelaxed"], "other_path": {c: o[c] for c in ("relax_status", "ef_relaxed")}}
                   for r, o in zip(runs[k]["rows"], other[k])
                   if r["status"] != "ok" or str(r["relax_status"]).startswith(("dropped", "failed"))]
               for k in runs}
    atoms = sum(r["natoms"] for r in rows_a if r["relax_status"] is not None)

    def q(v: np.ndarray) -> dict:
        a = np.abs(v)
        return {"median_abs": float(np.median(a)), "p90_abs": float(np.quantile(a, 0.9)), "max_abs": float(a.max())}

    result = {
        "command": " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]),
        "generated": args.generated, "crystals": n, "relaxed_atoms": atoms, "mlff": args.mlff, "fire_steps": args.steps,
        "fmax": args.fmax, "threads": args.threads, "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "speed_ratio": round(seconds["ase"] / seconds["batched"], 2),
        "relaxed_by_both": len(both), "given_to_mlff": relaxed, "converged": conv,
        "ef_relaxed_diff_eV_per_atom": q(d_ef), "ef_unrelaxed_diff_eV_per_atom": q(d_ef0),
        "volume_rel_diff": q(d_vol),
        "status_counts": {k: runs[k]["status_counts"] for k in runs},
        "relax_status_counts": {k: dict(Counter(str(r["relax_status"]) for r in runs[k]["rows"])) for k in runs},
        "dropped_or_failed": dropped,
        "versions": {k: md.version(k) for k in ("torch", "torch-sim-atomistic", "sevenn", "vesin", "ase")},
        "machine": {"nproc": os.cpu_count(), "loadavg_after": os.getloadavg()},
        "note": "one run, both paths on the same crystals, references and threads; " + args.note,
    }
    out = Path(args.out)
    atomic_save_json(out.with_suffix(".json"), result)
    e, v = result["ef_relaxed_diff_eV_per_atom"], result["volume_rel_diff"]
    md_lines = [
        f"# Batched vs one-at-a-time relaxation ({n} generated crystals, {atoms} atoms)", "",
        f"Command: `{result['command']}`", "",
        f"{args.mlff}, FIRE + Frechet cell filter, fmax {args.fmax} eV/Å, at most {args.steps} steps, "
        f"{args.threads} torch thread(s), {result['note']}.", "",
        "| | one at a time (ASE) | batched (torch-sim) |", "|---|---|---|",
        f"| wall time (s) | {seconds['ase']:.1f} | {seconds['batched']:.1f} |",
        f"| converged | {conv['ase']} | {conv['batched']} |",
        f"| status | {runs['ase']['status_counts']} | {runs['batched']['status_counts']} |",
        f"| dropped / failed | {len(dropped['ase'])} | {len(dropped['batched'])} |", "",
        f"Speed ratio {result['speed_ratio']}×. On the {len(both)} crystals both paths relaxed: relaxed E_f "
        f"differs by median {e['median_abs']:.2e}, 90th percentile {e['p90_abs']:.2e}, max {e['max_abs']:.2e} "
        f"eV/atom; final volume by median {v['median_abs']:.2e}, 90th percentile {v['p90_abs']:.2e}, "
        f"max {v['max_abs']:.2e} (relative).", "",
        "Dropped or failed (the other path's outcome in brackets):", ""]
    for k, name in (("ase", "one at a time"), ("batched", "batched")):
        md_lines.append(f"- {name}: " + ("; ".join(
            f"{d['id']} {d['formula']} {d['relax_status'] or d['status']} [{d['other_path']['relax_status']}, "
            f"E_f {_fmt(d['other_path']['ef_relaxed'])}]" for d in dropped[k]) or "none"))
    md_lines.append("")
    with atomic_write(out.with_suffix(".md"), "w") as f:
        f.write("\n".join(md_lines))
    print(json.dumps({k: result[k] for k in ("seconds", "speed_ratio", "ef_relaxed_diff_eV_per_atom",
                                             "volume_rel_diff", "converged")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
