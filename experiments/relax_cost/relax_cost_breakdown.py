"""Where the time of a relaxation step goes, one-at-a-time (ASE) vs batched (torch-sim), on the
same generated crystals (issue 17): why batching gains ~2× here and not ≥ 5×.

For the first ``--limit`` generated crystals that the formation step would relax, it measures

- the neighbour edges within SevenNet's 5 Å cutoff (the model's cost grows with edges, not atoms);
- one ASE force + stress call per crystal (SevenNet's ASE calculator, one torch thread: what each
  worker process of the one-at-a-time path runs), averaged over ``--calls`` calls;
- one batched force + stress call on all of them (SevenNet's torch-sim wrapper) at 1 and at
  ``--threads`` torch threads, and the part of it spent in the network.

The ratio *ASE call per crystal / batched call per crystal* bounds what batching can save per
FIRE step: the batched call still pays the network's per-edge cost, which batching cannot remove.

    .venv/bin/python experiments/relax_cost/relax_cost_breakdown.py --generated work/demo/generated/cfg_T1000.npz \
        --refs work/demo/formation/elemental_refs_sevenn.json --out results/relax_cost_breakdown
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generated", required=True, help="generated-structure file (evaluate regenerate)")
    p.add_argument("--refs", required=True, help="elemental-reference cache (decides which crystals are relaxed)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--ase-crystals", type=int, default=30, help="crystals timed with the ASE calculator")
    p.add_argument("--calls", type=int, default=3, help="timed calls per crystal / per batch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--note", default="", help="the conditions of the run, recorded in the output")
    p.add_argument("--out", default="results/relax_cost_breakdown", help="writes OUT.json and OUT.md")
    args = p.parse_args()
    import torch
    import torch_sim as ts
    from ase.neighborlist import neighbor_list

    from dosmatgen.evaluate.batched_relax import load_batched_model
    from dosmatgen.evaluate.formation import FormationItem, _prepare_item
    from dosmatgen.evaluate.mlff import get_calculator
    from dosmatgen.generate.generated import load_generated
    from dosmatgen.io import atomic_save_json, atomic_write

    refs = json.loads(Path(args.refs).read_text())["elements"]
    gen = load_generated(args.generated)
    atoms = []
    for i in range(min(args.limit, len(gen))):
        z, x, lat = gen.item(i)
        _, a, _ = _prepare_item(FormationItem(f"{i:06d}", gen.source_ids[i], np.asarray(z), np.asarray(x),
                                              np.asarray(lat)), refs, 0.0)
        if a is not None:
            atoms.append(a)
    nat = np.array([len(a) for a in atoms])
    edges = np.array([len(neighbor_list("i", a, 5.0)) for a in atoms])

    torch.set_num_threads(1)
    calc = get_calculator("sevenn")
    k = min(args.ase_crystals, len(atoms))
    ase_s = []
    for a in atoms[:k]:
        a = a.copy()
        a.calc = calc
        a.get_potential_energy()  # warm-up
        t0 = time.perf_counter()
        for c in range(args.calls):
            a.positions[0, 0] += 1e-4 * (c + 1)  # a new geometry: no cached result
            a.get_potential_energy()
            a.get_stress()
        ase_s.append((time.perf_counter() - t0) / args.calls)
    ase_s = np.array(ase_s)

    model = load_batched_model("sevenn")
    state = ts.initialize_state(atoms, torch.device("cpu"), torch.float32)
    batched = {}
    for threads in sorted({1, args.threads}):
        torch.set_num_threads(threads)
        model(state)  # warm-up
        inner = model.model.forward
        spent = []

        def timed_forward(data, _inner=inner, _spent=spent):
            t = time.perf_counter()
            out = _inner(data)
            _spent.append(time.perf_counter() - t)
            return out

        model.model.forward = timed_forward
        t0 = time.perf_counter()
        for _ in range(args.calls):
            model(state)
        wall = (time.perf_counter() - t0) / args.calls
        model.model.forward = inner
        net = float(np.mean(spent))
        batched[threads] = {"call_s": wall, "network_s": net, "network_fraction": net / wall,
                            "per_crystal_s": wall / len(atoms), "per_edge_us": 1e6 * wall / edges.sum()}
    ase_edge_us = 1e6 * float(np.mean(ase_s / edges[:k]))
    b1 = batched[1]
    ceiling_1 = float(np.mean(ase_s)) / (b1["per_edge_us"] * 1e-6 * float(np.mean(edges[:k])))
    bn = batched[args.threads]
    ceiling_n = float(np.mean(ase_s)) / args.threads / (bn["per_edge_us"] * 1e-6 * float(np.mean(edges[:k])))
    result = {
        "command": " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]),
        "crystals": len(atoms), "atoms": int(nat.sum()), "edges": int(edges.sum()),
        "edges_per_atom": {"mean": float((edges / nat).mean()), "median": float(np.median(edges / nat)),
                           "max": float((edges / nat).max())},
        "ase": {"crystals_timed": k, "call_s_mean": float(ase_s.mean()), "per_edge_us": ase_edge_us,
                "torch_threads": 1},
        "batched": {str(t): v for t, v in batched.items()},
        "step_ratio_bound": {
            "one_thread_each": ceiling_1,
            f"{args.threads}_ase_workers_vs_{args.threads}_threads": ceiling_n},
        "versions": {x: md.version(x) for x in ("torch", "torch-sim-atomistic", "sevenn", "e3nn")},
        "machine": {"nproc": os.cpu_count(), "loadavg_after": os.getloadavg()},
        "note": args.note,
    }
    out = Path(args.out)
    atomic_save_json(out.with_suffix(".json"), result)
    lines = [
        "# Where a relaxation step's time goes: one-at-a-time vs batched (SevenNet 7net-0, CPU)", "",
        f"Command: `{result['command']}`", "", f"{args.note}", "",
        f"{len(atoms)} generated crystals, {int(nat.sum())} atoms, {int(edges.sum())} edges within 5 Å "
        f"(mean {result['edges_per_atom']['mean']:.0f} per atom, max {result['edges_per_atom']['max']:.0f}).", "",
        "| call | threads | seconds | per crystal (ms) | per edge (µs) | in the network |", "|---|---|---|---|---|---|",
        f"| ASE, one crystal ({k} timed) | 1 | {ase_s.mean():.3f} | {1e3 * ase_s.mean():.0f} | {ase_edge_us:.0f} | - |"]
    for t, v in batched.items():
        lines.append(f"| batched, all {len(atoms)} | {t} | {v['call_s']:.2f} | {1e3 * v['per_crystal_s']:.0f} | "
                     f"{v['per_edge_us']:.0f} | {100 * v['network_fraction']:.0f} % |")
    lines += ["", f"Bound on the per-step speed-up from batching (ASE call per crystal / batched cost of the same "
              f"edges): **{ceiling_1:.1f}×** with one thread each; **{ceiling_n:.1f}×** for {args.threads} ASE "
              f"worker processes against {args.threads} torch threads. The network's cost per edge, which batching "
              "cannot remove, is most of an ASE call already.", ""]
    with atomic_write(out.with_suffix(".md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
