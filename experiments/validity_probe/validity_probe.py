"""Where do invalid generated crystals come from? (issue 18, diagnosis)

Samples one crystal per selected structure with a trained diffusion checkpoint under several
guidance *variants*, and reports validity (``dosmatgen.data.validity.validity_reason``: no pair
closer than 0.5 Å, sane volume), the median ratio of generated to target cell volume, and element
accuracy (generated atom i vs conditioning atom i).

A variant is ``WA,WG[,THI][@T0]``: classifier-free guidance weight WA on the type channel and WG
on the geometry (coordinates and lattice), ``(1 + w) eps(S_t, y) - w eps(S_t, empty)`` per channel
(WA = WG = 1 is the paper's CFG, 0,0 the conditional model alone, -1,-1 the unconditional one);
THI: guidance only at t <= THI (the conditional model above); T0: start from the structure noised
to T0 instead of the prior (default: the prior at T).

    .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint M.pt --store S.npz --split SPLIT.json \\
        --subset val test --source mp20 --variant 1,1 --variant -1,-1 --variant 1,1@200 --out probe.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from dosmatgen.errors import ConfigError, DosmatgenError
from dosmatgen.io import atomic_save_json
from dosmatgen.model.denoiser import DenoiserOutput


class ChannelGuidance:
    """CFG with one weight for the types and another for coordinates and lattice
    (:meth:`JointDiffusion.eps_cfg` with ``omega_geometry``), optionally only at t <= ``t_max``
    (the conditional model above)."""

    def __init__(self, omega_types: float, omega_geometry: float, t_max: int | None = None):
        self.omega_types, self.omega_geometry, self.t_max = omega_types, omega_geometry, t_max

    def predict(self, diffusion, state, t: torch.Tensor) -> DenoiserOutput:
        if self.t_max is not None and int(t.max()) > self.t_max:
            return diffusion.eps(state, t)
        return diffusion.eps_cfg(state, t, self.omega_types, self.omega_geometry)


def parse_variant(text: str) -> tuple[ChannelGuidance, int | None]:
    """``"WA,WG[,THI][@T0]"`` -> (guidance, t0).

    >>> g, t0 = parse_variant("1,-1,500@200")
    >>> (g.omega_types, g.omega_geometry, g.t_max, t0)
    (1.0, -1.0, 500, 200)
    """
    body, _, start = text.partition("@")
    parts = body.split(",")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        guidance = ChannelGuidance(float(parts[0]), float(parts[1]), int(parts[2]) if len(parts) == 3 else None)
        t0 = int(start) if start else None
    except ValueError:
        raise ConfigError(f"--variant {text!r}: expected WA,WG[,THI][@T0], e.g. 1,1 or 1,-1,500@200") from None
    return guidance, t0


def probe(diffusion, standardiser, records, guidance: ChannelGuidance, t0: int | None, *, steps: int,
          step_lr: float, batch_size: int, seed: int) -> dict:
    """Sample ``records`` under ``guidance`` and summarise validity (:class:`Validity`, overall and
    by atom count), volume ratio and elements (:class:`ElementAccuracy`)."""
    from dosmatgen.evaluate.metrics import ElementAccuracy, Validity
    from dosmatgen.model.batch import CrystalBatch
    from dosmatgen.generate.sampler import sample

    T = diffusion.timesteps
    n_steps = steps if t0 is None else max(1, round(steps * t0 / T))
    items, ratios, by_size = [], [], {}
    for k in range(0, len(records), batch_size):
        chunk = records[k:k + batch_size]
        spec = CrystalBatch.from_records(chunk, standardiser)
        out = sample(diffusion, spec, guidance=guidance, t0=t0, steps=n_steps, step_lr=step_lr,
                     seed=seed + k // batch_size, progress=False)
        ends = np.cumsum(out.num_atoms.numpy())
        for i, rec in enumerate(chunk):
            a, b = ends[i] - rec.num_atoms, ends[i]
            item = (out.atom_types[a:b].numpy(), out.frac_coords[a:b].numpy(), out.lattices[i].numpy())
            items.append(item)
            ratios.append(abs(np.linalg.det(item[2])) / abs(np.linalg.det(rec.lattice)))
            size = "1-4" if rec.num_atoms <= 4 else "5-6" if rec.num_atoms <= 6 else "7+"
            by_size.setdefault(size, []).append(item)
    validity = Validity().compute(items).counts
    elements = ElementAccuracy().compute([z for z, _, _ in items], [r.atomic_numbers for r in records]).counts
    return {"n": len(items), "validity": validity["valid"] / len(items),
            "reasons": {k.removeprefix("invalid_"): v for k, v in validity.items()},
            "volume_ratio_median": float(np.median(ratios)),
            "volume_ratio_quartiles": [float(q) for q in np.quantile(ratios, [0.25, 0.75])],
            "element_accuracy": elements["atoms_correct"] / elements["atoms_total"],
            "validity_by_atoms": {k: [Validity().compute(v).counts["valid"], len(v)] for k, v in sorted(by_size.items())}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="diffusion checkpoint (dosmatgen train --kind diffusion)")
    p.add_argument("--store", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--subset", nargs="+", default=["test"], choices=["train", "val", "test"])
    p.add_argument("--source", default=None, help="keep only structure ids starting with this (e.g. mp20)")
    p.add_argument("--variant", action="append", required=True, help="WA,WG[,THI][@T0] (repeatable)")
    p.add_argument("--steps", type=int, default=200, help="reverse steps from T (a start at T0 uses the same stride)")
    p.add_argument("--step-lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)
    try:
        variants = [(v, *parse_variant(v)) for v in args.variant]
        from dosmatgen.checkpoint import load_model
        from dosmatgen.data.split import split_records

        diffusion, std, meta = load_model(args.checkpoint, "cpu")
        if meta["kind"] != "diffusion" or std is None:
            raise ConfigError(f"--checkpoint {args.checkpoint} is not a diffusion model with a DOS standardiser")
        parts = split_records(args.store, args.split)
        records = [r for part in args.subset for r in parts[part]
                   if args.source is None or r.structure_id.startswith(args.source)]
        if not records:
            raise ConfigError("no structure selected (check --subset and --source)")
    except DosmatgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {"command": " ".join(["experiments/validity_probe/validity_probe.py", *(argv if argv is not None else sys.argv[1:])]),
              "checkpoint_epoch": meta.get("epoch"), "n_structures": len(records), "variants": {}}
    for text, guidance, t0 in variants:
        row = probe(diffusion, std, records, guidance, t0, steps=args.steps, step_lr=args.step_lr,
                    batch_size=args.batch_size, seed=args.seed)
        report["variants"][text] = row
        print(f"{text}: validity {100 * row['validity']:.1f} % of {row['n']}, volume ratio "
              f"{row['volume_ratio_median']:.2f}, elements {100 * row['element_accuracy']:.0f} %, "
              f"by atoms {row['validity_by_atoms']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
