"""Render results/ablation_condition.md (issue 13) from ablation_condition.sh's outputs (this folder).

    .venv/bin/python experiments/ablation_condition/ablation_condition_table.py paper aux x0 ... [--lookup FILE] [--out FILE]

One row per (variant, T): per-atom element accuracy, composition and structure match, DOS MAEs,
validity, training and sampling time, each read from the variant's metrics JSON, generated file
and timing.json; the config file and the exact commands of each variant are listed under the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from dosmatgen.generate.generated import load_generated
from dosmatgen.io import atomic_write

ROOT = Path("work/ablation_condition")
TS = (200, 500, 1000)


def _value(metrics: dict, name: str) -> float | None:
    m = metrics.get("metrics", {}).get(name)
    return None if m is None else m.get("value")


def _fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def rows_of(name: str) -> tuple[list[str], dict]:
    out = ROOT / name
    timing = json.loads((out / "timing.json").read_text())
    lines = []
    for t in TS:
        met = json.loads((out / f"metrics_T{t}.json").read_text())
        gen = load_generated(out / f"gen_T{t}.npz")
        mae_gen, mae_ref = _value(met, "mae_gen_y"), _value(met, "mae_yhat_y")
        ratio = mae_gen / mae_ref if mae_gen is not None and mae_ref else None
        acc = _value(met, "element_accuracy")
        per_structure = gen.meta["sampling_seconds"] / max(len(gen), 1)
        lines.append(f"| {name} | {t} | {_fmt(None if acc is None else acc / 100, 2)} | "
                     f"{_fmt(_value(met, 'composition_match_rate'), 0)} | {_fmt(_value(met, 'structure_match_rate'), 0)} | "
                     f"{_fmt(mae_gen)} | {_fmt(ratio, 2)} | {_fmt(_value(met, 'validity'), 0)} | "
                     f"{timing['train_wall_s']} | {per_structure:.3f} | {len(gen)} |")
    return lines, timing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", help="variants (experiments/ablation_condition/configs/NAME.yaml)")
    p.add_argument("--lookup", default=None, help="metrics JSON of `dosmatgen evaluate lookup` on the same structures")
    p.add_argument("--lookup-command", default=None, help="the command that wrote --lookup")
    p.add_argument("--notes", default=None, help="markdown file appended under the table")
    p.add_argument("--out", default="results/ablation_condition.md")
    args = p.parse_args(argv)
    missing = [n for n in args.names for f in ["timing.json"] + [f"metrics_T{t}.json" for t in TS]
               if not (ROOT / n / f).exists()]
    if missing:
        print(f"ablation variant(s) not finished: {sorted(set(missing))}", file=sys.stderr)
        return 2
    head = ["# Condition-fidelity ablation (issue 13): demo budget, CPU, first 100 test structures", "",
            "Each variant trains the compact denoiser (hidden 128, 4 layers) for the demo profile's "
            "diffusion budget (10,000 steps of 64 crystals, Adam lr 1e-3 with the plateau schedule, seed 0) "
            "on the demo split (`results/demo_run/split.json`, standardiser `results/demo_run/standardiser.json`, "
            "store `resources/builtin_dos.npz`), then regenerates the first 100 test structures with "
            "classifier-free guidance (ω = 1, the demo's 200 strided steps; T = 200 uses 40 of them, T = 500 "
            "100), sampler seed 0, and is scored by `dosmatgen evaluate score` with the demo run's surrogate "
            "(`results/demo_run/surrogate.pt`). A **small** run: one seed, 100 structures (±5 points of "
            "binomial noise on a 50 % rate). Generated atom i is compared with conditioning atom i.", "",
            "| variant | T | element acc. | comp. match % | struct. match % | MAE(ŷ_gen, y) | MAE(ŷ_gen, y) / MAE(ŷ, y) "
            "| validity % | train s | sample s / structure | n |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    body, details = [], []
    for name in args.names:
        lines, timing = rows_of(name)
        body += lines
        cfg_path = Path("experiments/ablation_condition/configs") / f"{name}.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())["models"]["diffusion"]
        details += [f"- **{name}** (`{cfg_path}`: model {json.dumps(cfg.get('model', {}))}, diffusion "
                    f"{json.dumps(cfg.get('diffusion', {}))}), commit {timing['commit'][:7]}, "
                    f"{timing['threads']} threads:", f"  `{timing['train_command']}`"]
    if args.lookup:
        met = json.loads(Path(args.lookup).read_text())
        acc = _value(met, "element_accuracy")
        body.append(f"| DOS lookup (1-NN, L1, training atoms) | any | {_fmt(None if acc is None else acc / 100, 2)} | "
                    f"{_fmt(_value(met, 'composition_match_rate'), 0)} | — | — | — | — | — | — | "
                    f"{met.get('n_structures', '—')} |")
        if args.lookup_command:
            details += [f"- **DOS lookup**: `{args.lookup_command}`"]
    probes = [(n, json.loads((ROOT / n / "probe.json").read_text())) for n in args.names
              if (ROOT / n / "probe.json").exists()]
    if probes:
        ts = [r["t"] for r in probes[0][1]["rows"]]
        body += ["", "Which evidence each model reads (`experiments/ablation_condition/ablation_condition_probe.py work/ablation_condition/"
                 "NAME/model/best.pt`, first 100 test structures, one noising draw, seed 0): accuracy of the argmax "
                 "of the one-step clean-type estimate A0_hat at timestep t, with the DOS condition / without it; "
                 "last row, the argmax of the noisy types A_t alone.", "",
                 "| variant | " + " | ".join(f"t = {t}" for t in ts) + " |", "|---|" + "---|" * len(ts)]
        for n, pr in probes:
            body.append(f"| {n} | " + " | ".join(f"{r['conditioned']:.2f} / {r['unconditioned']:.2f}"
                                                  for r in pr["rows"]) + " |")
        body.append("| argmax(A_t) | " + " | ".join(f"{r['argmax_A_t']:.2f}" for r in probes[0][1]["rows"]) + " |")
    text = "\n".join(head + body + ["", "Commands (regeneration and scoring: `experiments/ablation_condition/ablation_condition.sh`, "
                                         "which lists them; table: `experiments/ablation_condition/ablation_condition_table.py`):", ""]
                     + details) + "\n"
    if args.notes:
        text += "\n" + Path(args.notes).read_text()
    with atomic_write(args.out, "w") as fh:
        fh.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
