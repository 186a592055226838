"""Where the geometry fails: crystals regenerated with their elements clamped (as ``csp_probe.py``)
from a start t0 (their own structure noised to t0 with the forward processes; t0 = T: pure noise),
optionally with one geometry channel clamped too, then matched at Table 2's tolerances.

``--clamp lattice``: after every reverse step the lattice is reset to the target's lattice noised to
the step's time (the types' way of clamping, A6), exact at the end: the coordinates alone are
generated. ``--clamp coords``: the same for the fractional coordinates (A5): the lattice alone is
generated. ``--clamp lattice-exact``: the lattice is the target's own at every step (a state the
model never saw in training at s > 0: its coordinates read a noise-free cell); ``lattice-mean``: the
target's lattice times sqrt(abar_s), the noised lattice's mean, without its noise. ``--clamp none``:
both generated. A start at t0 < T tells how much of a crystal the model recovers from a given noise
level (sigma_x(t0) of the coordinates, abar(t0) of the lattice). ``--environment`` and
``--lattice-estimate`` install the sampling probes of ``environment_guidance.py`` and
``lattice_estimate.py``.

    .venv/bin/python experiments/real_crystal_training/channel_probe.py CHECKPOINT SPLIT OUT.json \
        [--clamp none|lattice|coords|lattice-exact|lattice-mean] [--t0 200,400,600,800,1000]
        [--environment RATE,STEP,LOW,HIGH] [--lattice-estimate LOW,HIGH] [any `dosmatgen sample` sampler flag]
    .venv/bin/python experiments/real_crystal_training/channel_probe.py --summary DIR   # a markdown table of DIR/*.json

The sampler is ``config/demo.yaml``'s ``generate`` recipe (``csp_probe.demo_options``); a sampler flag
of ``dosmatgen sample`` (``--seed``, ``--steps``, ``--step-lr``, ...) changes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from dosmatgen.checkpoint import load_model
from dosmatgen.commands.arguments import add_sampler_options, sampler_options
from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.metrics import StructureMatchRate
from dosmatgen.generate import sampler
from dosmatgen.generate.runner import generate
from dosmatgen.io import atomic_save_json
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.paths import RESOURCES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csp_probe import demo_options, sampler_change  # noqa: E402
import environment_guidance  # noqa: E402
import lattice_estimate  # noqa: E402

CLAMPS = ("none", "lattice", "coords", "lattice-exact", "lattice-mean")


def clamp_channel(channel: str) -> None:
    """Make every reverse step of the sampler reset ``channel`` of each crystal to its target noised
    to the step's time (the chain's own noise generator; exact at s = 0). There is no public hook:
    the step of the sampler's chain is wrapped (tests/test_layout.py lists this use)."""
    step = sampler._Chain.step

    def clamped_step(chain, state, t, s, *args, **kwargs):
        new = step(chain, state, t, s, *args, **kwargs)
        clean = chain.sched.clean_state(chain.spec, chain.max_z)
        if channel == "lattice-exact":
            return new.replace(lattices=clean.lattices)
        if channel == "lattice-mean":
            return new.replace(lattices=chain.abar[s].sqrt() * clean.lattices)
        if channel == "lattice":
            abar = chain.abar[s]
            noise = (1 - abar).sqrt() * chain.randn(tuple(clean.lattices.shape)) if s > 0 else 0.0
            return new.replace(lattices=abar.sqrt() * clean.lattices + noise)
        noise = chain.sigma[s] * chain.randn(tuple(clean.frac_coords.shape)) if s > 0 else 0.0
        return new.replace(frac_coords=(clean.frac_coords + noise) % 1.0)

    sampler._Chain.step = clamped_step


def change(run: dict) -> str:
    """A run's sampler change from the demo's recipe, and the probes it installed (guidance, lattice estimate)."""
    return sampler_change(run["sampler"], probes=tuple(
        f"{label} {run[key]}" for key, label in (("environment", "environment guidance"),
                                                 ("lattice_estimate", "lattice estimate")) if run.get(key)))


def summary(folder: Path) -> str:
    """One row per result file of this probe, one column per start time: crystals matched out of the file's n."""
    runs = {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
    runs = {name: run for name, run in runs.items() if "clamp" in run}  # this probe's files only
    times = sorted({int(t) for run in runs.values() for t in run["matched"]})
    rows = ["| file | checkpoint | crystals | clamped channel | sampler change | " + " | ".join(f"t0 = {t}" for t in times)
            + " |", "|---|---|---|---|---|" + "---|" * len(times)]
    for name, run in runs.items():
        ckpt = Path(run["checkpoint"])
        cells = [f"{run['matched'][str(t)]} of {run['n']}" if str(t) in run["matched"] else "" for t in times]
        rows.append(f"| {name} | `{ckpt.parent.name}/{ckpt.name}` | {Path(run['split']).stem.removeprefix('split_test_')} "
                    f"| {run['clamp']} | {change(run)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("split", nargs="?")
    p.add_argument("out", nargs="?")
    p.add_argument("--clamp", choices=CLAMPS, default="none")
    p.add_argument("--t0", default="200,400,600,800,1000", help="comma-separated start times (T: pure noise)")
    add_sampler_options(p.add_argument_group("sampler (default: the demo's recipe, demo_options)"))
    p.add_argument("--environment", metavar="RATE,STEP,LOW,HIGH",
                   help="environment_guidance.py: equalise the tied groups' surroundings after each step with LOW <= s <= HIGH")
    p.add_argument("--lattice-estimate", metavar="LOW,HIGH",
                   help="lattice_estimate.py: the coordinates read the model's clean-lattice estimate at LOW <= t <= HIGH")
    p.add_argument("--summary", help="print a markdown table of the JSON files in this folder and stop")
    args = p.parse_args()
    if args.summary:
        print(summary(Path(args.summary)))
        return
    if not (args.checkpoint and args.split and args.out):
        p.error("CHECKPOINT, SPLIT and OUT are needed unless --summary")
    torch.set_num_threads(1)
    store = DOSStore(RESOURCES / "builtin_dos.npz")
    records = [store[i] for i in json.load(open(args.split))["test"]]
    targets = [r.to_structure() for r in records]
    diffusion, std, _ = load_model(args.checkpoint, "cpu")
    options = sampler_options(args, **dataclasses.asdict(demo_options()))
    if args.clamp != "none":
        clamp_channel(args.clamp)
    if args.environment:
        rate, step, low, high = args.environment.split(",")
        environment_guidance.install(float(rate), float(step), int(low), int(high))
    if args.lattice_estimate:
        low, high = args.lattice_estimate.split(",")
        lattice_estimate.install(int(low), int(high))
    T = int(diffusion.timesteps)
    matched, per_structure = {}, {}
    spec = CrystalBatch.from_records(records, std, fixed_mask=[[True] * r.num_atoms for r in records])
    for t0 in (int(x) for x in args.t0.split(",")):
        gen = generate(diffusion, spec, options, t0=None if t0 >= T else t0, progress=False)
        outcomes = StructureMatchRate().outcomes([s for s, _ in gen.structures()], targets)
        key = str(min(t0, T))
        matched[key] = outcomes.count("match")
        per_structure[key] = dict(zip([r.structure_id for r in records], outcomes))
        print(f"clamp {args.clamp}, t0 {t0}: {matched[key]} of {len(records)} match", flush=True)
    atomic_save_json(args.out, {"checkpoint": args.checkpoint, "split": args.split, "clamp": args.clamp,
                                "environment": args.environment,
                                "lattice_estimate": args.lattice_estimate, "seed": options.seed, "sampler": options.to_dict(), "n": len(records),
                                "matched": matched, "per_structure": per_structure})


if __name__ == "__main__":
    main()
