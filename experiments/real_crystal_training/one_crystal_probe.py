"""Can a denoiser of a given size memorise the geometry of ONE real crystal? A fresh diffusion model
(the demo's posterior type head, the paper's DiffusionConfig otherwise) is trained on a single
crystal of the built-in store (its DOS standardised with the demo run's standardiser), the batch
``--copies`` copies of it, Adam with a linearly decaying learning rate (the tests' ``train``), then
it regenerates that crystal ``--samples`` times from pure noise with its elements clamped, with the
demo's sampling recipe (``config/demo.yaml``) and with the paper's (the sampler defaults at the
demo's 200 steps), at two sampling seeds, matched at Table 2's tolerances. The losses per channel at
a few fixed times (A9-A11, 256 draws) say which noise levels the model has not learned. With
``--components``, also each field in which the two recipes differ, one at a time: the paper's recipe
with the demo's value of that field, and the demo's with the paper's.

    .venv/bin/python experiments/real_crystal_training/one_crystal_probe.py STRUCTURE_ID STANDARDISER OUT.json \
        [--steps 3000] [--hidden 128 --layers 4 --freqs 10] [--copies 32] [--samples 32] [--lr 1e-3] [--components]
    .venv/bin/python experiments/real_crystal_training/one_crystal_probe.py --summary DIR   # a markdown table of DIR/*.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.data.store import DOSStore
from dosmatgen.evaluate.metrics import StructureMatchRate
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.generate.runner import generate
from dosmatgen.io import atomic_save_json
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.diffusion import JointDiffusion
from dosmatgen.paths import RESOURCES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csp_probe import demo_options  # noqa: E402

LOSS_TIMES = (200, 400, 600, 800)


def recipes(components: bool) -> dict[str, SamplerOptions]:
    """The demo's and the paper's sampling recipes and, with ``components``, each field where they
    differ swapped one at a time (``batch_size`` aside: it does not change a crystal)."""
    demo = demo_options()
    paper = SamplerOptions(steps=demo.steps)
    out = {"demo": demo, "paper": paper}
    if components:
        for f in dataclasses.fields(SamplerOptions):
            d, p = getattr(demo, f.name), getattr(paper, f.name)
            if d != p and f.name != "batch_size":
                out[f"paper, {f.name} {d}"] = paper.replace(**{f.name: d})
                out[f"demo, {f.name} {p}"] = demo.replace(**{f.name: p})
    return out


def fit(model: JointDiffusion, batch: CrystalBatch, steps: int, lr: float, seed: int) -> None:
    """Adam, learning rate decaying linearly to 0, gradient values clipped at 0.5 (as the trainer)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model.loss(batch, gen)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()
        sched.step()


@torch.no_grad()
def losses_at(model: JointDiffusion, batch: CrystalBatch, t: int) -> dict[str, float]:
    """The training loss terms with every crystal of ``batch`` noised to time ``t`` (fixed draws)."""
    sample_t = model.schedule.sample_t
    model.schedule.sample_t = lambda n, device, generator: torch.full((n,), t, dtype=torch.long, device=device)
    try:
        terms = model.loss(batch, torch.Generator().manual_seed(5))
    finally:
        model.schedule.sample_t = sample_t
    return {k: round(float(v), 4) for k, v in terms.items()}


def summary(folder: Path) -> str:
    """One row per result file: crystal, model, training, matches per recipe and seed, losses."""
    rows = ["| file | crystal | atoms | model | steps | training s | demo, seeds 0 / 1 | paper, seeds 0 / 1 | "
            "loss X at t = 200 / 400 / 600 / 800 | loss L at t = 200 / 400 / 600 / 800 |", "|---" * 10 + "|"]
    for path in sorted(folder.glob("*.json")):
        run = json.loads(path.read_text())
        m, model, n = run["matched"], run["model"], run["samples"]
        loss = lambda key: " / ".join(f"{run['losses'][str(t)][key]:.2f}" for t in LOSS_TIMES)  # noqa: E731
        rows.append(f"| {path.name} | {run['formula']} | {run['atoms']} | {model['hidden_dim']} x {model['num_layers']}, "
                    f"F = {model['num_freqs']} | {run['steps']} | {run['train_seconds']} | "
                    f"{m['demo seed 0']} / {m['demo seed 1']} of {n} | {m['paper seed 0']} / {m['paper seed 1']} of {n} | "
                    f"{loss('loss_X')} | {loss('loss_L')} |")
    for path in sorted(folder.glob("*.json")):
        run = json.loads(path.read_text())
        parts = [k.removesuffix(" seed 0") for k in run["matched"] if k.endswith(" seed 0")
                 and k.removesuffix(" seed 0") not in ("demo", "paper")]
        if parts:
            rows += ["", f"{path.name}: one field swapped ({run['samples']} samples, seeds 0 / 1)", "",
                     "| recipe | matched |", "|---|---|"]
            rows += [f"| {k} | {run['matched'][k + ' seed 0']} / {run['matched'][k + ' seed 1']} |"
                     for k in ["demo", "paper"] + parts]
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("structure_id", nargs="?")
    p.add_argument("standardiser", nargs="?")
    p.add_argument("out", nargs="?")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--freqs", type=int, default=10)
    p.add_argument("--copies", type=int, default=32)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--components", action="store_true",
                   help="also swap each field in which the two recipes differ, one at a time")
    p.add_argument("--summary", help="print a markdown table of the JSON files in this folder and stop")
    args = p.parse_args()
    if args.summary:
        print(summary(Path(args.summary)))
        return
    if not (args.structure_id and args.standardiser and args.out):
        p.error("STRUCTURE_ID, STANDARDISER and OUT are needed unless --summary")
    torch.set_num_threads(1)
    raw = DOSStore(RESOURCES / "builtin_dos.npz")[args.structure_id]
    record = dataclasses.replace(raw, dos=DOSStandardiser.load(args.standardiser).transform(raw.dos))
    model = JointDiffusion(ModelConfig(hidden_dim=args.hidden, num_layers=args.layers, num_freqs=args.freqs, time_dim=64),
                           DiffusionConfig(type_target="posterior"))
    start = time.time()
    fit(model, CrystalBatch.from_records([record] * args.copies), args.steps, args.lr, args.seed)
    seconds = time.time() - start
    model.eval()
    target = raw.to_structure()
    chosen = recipes(args.components)
    matched = {}
    for name, options in chosen.items():
        for seed in (0, 1):
            spec = CrystalBatch.from_records([record] * args.samples, None, fixed_mask=[[True] * record.num_atoms] * args.samples)
            gen = generate(model, spec, options.replace(seed=seed), progress=False)
            outcomes = StructureMatchRate().outcomes([s for s, _ in gen.structures()], [target] * args.samples)
            matched[f"{name} seed {seed}"] = outcomes.count("match")
            print(f"{args.structure_id} {args.hidden}x{args.layers} F{args.freqs}, {args.steps} steps: {name} seed {seed}: "
                  f"{outcomes.count('match')} of {args.samples}", flush=True)
    batch = CrystalBatch.from_records([record] * 256)
    atomic_save_json(args.out, {
        "structure_id": args.structure_id, "formula": raw.formula, "atoms": raw.num_atoms,
        "model": {"hidden_dim": args.hidden, "num_layers": args.layers, "num_freqs": args.freqs},
        "steps": args.steps, "copies": args.copies, "lr": args.lr, "seed": args.seed, "train_seconds": round(seconds),
        "samples": args.samples, "matched": matched,
        "recipes": {name: options.to_dict() for name, options in chosen.items()},
        "losses": {str(t): losses_at(model, batch, t) for t in LOSS_TIMES}})


if __name__ == "__main__":
    main()
