"""Which evidence does a trained diffusion model use to name an atom's element? (issue 13)

For the first N test structures of a split, noise the crystal to timestep t with the forward
processes (A1, A5, A6), read the model's one-step estimate of the clean type vector,
A0_hat = (A_t - sqrt(1 - abar_t) eps_A) / sqrt(abar_t), and report how often its argmax is the true
element, with the DOS condition and without it (cond_mask all False), beside the argmax of the
noisy types A_t themselves. A model that reads both kinds of evidence is right wherever A_t shows
the element (small t) and right as often as the DOS allows where it does not (t near T).

    .venv/bin/python experiments/ablation_condition/ablation_condition_probe.py CHECKPOINT [--limit 100] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from dosmatgen.checkpoint import load_model
from dosmatgen.data.split import load_split
from dosmatgen.data.store import load_records
from dosmatgen.io import atomic_save_json
from dosmatgen.model.batch import CrystalBatch

TIMESTEPS = (1, 50, 100, 200, 500, 800, 999)


def probe(checkpoint: str, store: str, split: str, limit: int, seed: int = 0) -> list[dict[str, float]]:
    model, std, _ = load_model(checkpoint, "cpu")
    model.eval()
    ids = load_split(split)["test"][:limit]
    by_id = {r.structure_id: r for r in load_records(store)}
    batch = CrystalBatch.from_records([by_id[i] for i in ids], std)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for t in TIMESTEPS:
        tt = torch.full((batch.num_graphs,), t)
        state, _ = model.schedule.noise(batch, tt, gen, model.model_cfg.max_z)
        abar = model.schedule.alphas_cumprod[t]
        row = {"t": t, "argmax_A_t": float((state.types.argmax(-1) + 1 == batch.atom_types).float().mean())}
        with torch.no_grad():
            for label, mask in (("conditioned", None), ("unconditioned", torch.zeros_like(state.cond_mask))):
                eps_a = model.raw(state, tt, mask).eps_A
                a0 = (state.types - (1 - abar).sqrt() * eps_a) / abar.sqrt()
                row[label] = float((a0.argmax(-1) + 1 == batch.atom_types).float().mean())
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--store", default="resources/builtin_dos.npz")
    p.add_argument("--split", default="results/demo_run/split.json")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--out", default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = probe(args.checkpoint, args.store, args.split, args.limit)
    print("t      A0_hat conditioned   A0_hat unconditioned   argmax(A_t)")
    for r in rows:
        print(f"{r['t']:<6d} {r['conditioned']:<20.3f} {r['unconditioned']:<22.3f} {r['argmax_A_t']:.3f}")
    if args.out:
        atomic_save_json(args.out, {"checkpoint": args.checkpoint, "split": args.split, "limit": args.limit,
                                    "command": " ".join(sys.argv), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
