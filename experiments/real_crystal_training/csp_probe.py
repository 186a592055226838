"""The geometry alone: each real test crystal regenerated from pure noise with its own elements
clamped on every atom (crystal structure prediction, the DiffCSP task; the types' channel never
moves) and its site DOS as the condition, with the demo's sampler, then matched against the target
at Table 2's tolerances. Every crystal has the right composition, so the structure match counts
out of 100 what the joint generation counts out of its ~30 composition-matched crystals: a
sharper read of a model's geometry than Table 2's rate.

    .venv/bin/python experiments/real_crystal_training/csp_probe.py CHECKPOINT SPLIT OUT.json [--seed K] [--set FIELD=VALUE ...]

``SPLIT``: a split whose test part is the crystals (``$W/split_test_mp20.json``); the store is the
built-in one; the sampler is ``config/demo.yaml``'s ``generate`` recipe (run.sh's ``tt0g05``).
"""

from __future__ import annotations

import argparse
import json
import time

from dosmatgen.checkpoint import load_model
from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.metrics import StructureMatchRate
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.generate.generated import save_generated
from dosmatgen.generate.runner import generate
from dosmatgen.io import atomic_save_json
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.paths import RESOURCES

#: config/demo.yaml's generate recipe (tt0g05), CFG omega = 1, 200 strided steps
DEMO = SamplerOptions(omega=1.0, omega_geometry=0.0, steps=200, step_lr=0.0, repel_distance=1.0,
                      tie_equal_sites=0.05, type_temperature=0.0, geometry_temperature=0.5, batch_size=128)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("split")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="SamplerOptions fields changed from the demo's recipe, e.g. step_lr=1e-5 steps=1000")
    p.add_argument("--samples", help="also write the generated crystals to this .npz")
    args = p.parse_args()
    options = DEMO.replace(seed=args.seed, **{k: type(getattr(DEMO, k) if getattr(DEMO, k) is not None else 0.0)(v)
                                            for k, v in (item.split("=", 1) for item in args.set)})
    diffusion, std, _ = load_model(args.checkpoint, "cpu")
    store = DOSStore(RESOURCES / "builtin_dos.npz")
    records = [store[i] for i in json.load(open(args.split))["test"]]
    spec = CrystalBatch.from_records(records, std, fixed_mask=[[True] * r.num_atoms for r in records])
    start = time.perf_counter()
    gen = generate(diffusion, spec, options, progress=False)
    if args.samples:
        save_generated(args.samples, gen)
    outcomes = StructureMatchRate().outcomes([s for s, _ in gen.structures()],
                                             [r.to_structure() for r in records])
    result = {"checkpoint": args.checkpoint, "split": args.split, "seed": args.seed, "sampler": options.to_dict(),
              "n": len(records), "structure_match": outcomes.count("match"),
              "unbuildable": outcomes.count("unbuildable"), "seconds": round(time.perf_counter() - start, 1),
              "per_structure": dict(zip([r.structure_id for r in records], outcomes))}
    atomic_save_json(args.out, result)
    print(f"{args.checkpoint}: {result['structure_match']} of {len(records)} match (elements clamped)")


if __name__ == "__main__":
    main()
