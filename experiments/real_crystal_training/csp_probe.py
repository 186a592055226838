"""The geometry alone: each real test crystal regenerated from pure noise with its own elements
clamped on every atom (crystal structure prediction, the DiffCSP task; the types' channel never
moves) and its site DOS as the condition, with the demo's sampler, then matched against the target
at Table 2's tolerances. Every crystal has the right composition, so the structure match counts
out of 100 what the joint generation counts out of its ~30 composition-matched crystals: a
sharper read of a model's geometry than Table 2's rate.

    .venv/bin/python experiments/real_crystal_training/csp_probe.py CHECKPOINT SPLIT OUT.json [--seed K] [--step-lr ...]
        [--samples S.npz [--generate-only]] [--from-samples S.npz] [--device cuda] [--limit N]

``SPLIT``: a split whose test part is the crystals (``$W/split_test_mp20.json``); the store is the
built-in one; the sampler is ``config/demo.yaml``'s ``generate`` recipe (run.sh's ``tt0g05``), or with
``--paper-recipe`` the paper's (the sampler defaults at the demo's 200 steps), any ``dosmatgen sample``
sampler flag changing it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from dosmatgen.checkpoint import load_model
from dosmatgen.commands.arguments import add_sampler_options, sampler_options
from dosmatgen.config import DEFAULT_CONFIG, read_yaml
from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.metrics import StructureMatchRate
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.generate.generated import load_generated, save_generated
from dosmatgen.generate.runner import generate
from dosmatgen.io import atomic_save_json
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.paths import RESOURCES



def demo_options() -> SamplerOptions:
    """``config/demo.yaml``'s ``generate`` recipe for CFG at the default omega = 1 (run.sh's
    ``tt0g05``): every SamplerOptions field the section sets, but the guidance list and the
    classifier guidance's scale."""
    section = read_yaml(DEFAULT_CONFIG)["generate"]
    return SamplerOptions(**{f.name: section[f.name] for f in dataclasses.fields(SamplerOptions)
                             if f.name in section and f.name not in ("guidance", "guidance_scale")})


def sampler_change(sampler: dict, skip: tuple[str, ...] = (), probes: tuple[str, ...] = ()) -> str:
    """The fields of a recorded sampler (``SamplerOptions.to_dict``) that differ from
    :func:`demo_options`, as "field value" pairs in the dataclass's order, ``skip`` left out, then
    the ``probes`` a run installed (e.g. "lattice estimate 1,1000"); a dash when there is neither."""
    demo = demo_options().to_dict()
    changed = [f"{k} {sampler[k]}" for k, v in demo.items() if k in sampler and k not in skip and sampler[k] != v]
    return ", ".join(changed + list(probes)) or "—"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("split")
    p.add_argument("out")
    add_sampler_options(p.add_argument_group("sampler (default: the demo's recipe, demo_options)"))
    p.add_argument("--samples", help="also write the generated crystals to this .npz")
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=int, help="only the first LIMIT test crystals")
    p.add_argument("--paper-recipe", action="store_true",
                   help="start from the paper's sampler (the SamplerOptions defaults at the demo's steps) instead of the demo's recipe")
    p.add_argument("--generate-only", action="store_true",
                   help="write --samples and stop before matching (no pymatgen needed: a lent GPU machine)")
    p.add_argument("--from-samples", help="match the crystals of this .npz (a --generate-only run) instead of sampling")
    args = p.parse_args()
    store = DOSStore(RESOURCES / "builtin_dos.npz")
    records = [store[i] for i in json.load(open(args.split))["test"]][:args.limit]
    if args.from_samples:
        gen = load_generated(args.from_samples)
        if list(gen.source_ids) != [r.structure_id for r in records]:
            raise SystemExit(f"{args.from_samples} holds other crystals than the test part of {args.split}")
        saved = gen.meta["options"]
        options = SamplerOptions(**{**saved, "allowed_types": saved["allowed_types"] and tuple(saved["allowed_types"])})
    else:
        if args.generate_only and not args.samples:
            raise SystemExit("--generate-only needs --samples")
        start = SamplerOptions(steps=demo_options().steps) if args.paper_recipe else demo_options()
        options = sampler_options(args, **dataclasses.asdict(start))
        diffusion, std, _ = load_model(args.checkpoint, args.device)
        spec = CrystalBatch.from_records(records, std, fixed_mask=[[True] * r.num_atoms for r in records])
        gen = generate(diffusion, spec, options, progress=False)
        if args.samples:
            save_generated(args.samples, gen)
        if args.generate_only:
            print(f"{len(gen)} crystals (elements clamped) -> {args.samples}")
            return
    outcomes = StructureMatchRate().outcomes([s for s, _ in gen.structures()],
                                             [r.to_structure() for r in records])
    result = {"checkpoint": args.checkpoint, "split": args.split, "seed": options.seed, "sampler": options.to_dict(),
              "n": len(records), "structure_match": outcomes.count("match"),
              "unbuildable": outcomes.count("unbuildable"), "sampling_seconds": gen.meta.get("sampling_seconds"),
              "device": gen.meta.get("device"), "per_structure": dict(zip([r.structure_id for r in records], outcomes))}
    atomic_save_json(args.out, result)
    print(f"{args.checkpoint}: {result['structure_match']} of {len(records)} match (elements clamped)")


if __name__ == "__main__":
    main()
