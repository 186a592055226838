"""One table of the sampling options beside the demo's own sampling (issue 18, small).

Reads the demo run's metrics (``work/demo/metrics/cfg_T<T>.json`` and its per-structure CSV) and
each variant's from ``demo_sampling_options.sh`` (this folder) (``<work>/<variant>/metrics/``), and
prints Markdown: per sampling and source, n, validity, structure / composition match, element
accuracy and MAE(ŷ_gen, y); then the valid real (MP-20) crystals by atoms per cell.  Every number
is read from those files; nothing is recomputed.

    .venv/bin/python experiments/sampling_options/sampling_options_summary.py [--t0 1000] [--demo-metrics work/demo/metrics]
        [--options-work work/demo_sampling_options] [--out results/demo_sampling_options/summary_T1000.md]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root
sys.path.insert(0, str(ROOT))

LABELS = {
    "demo": "demo (step_lr 1e-5)",
    "steplr0": "`--step-lr 0`",
    "steplr0_omegageom0": "`--step-lr 0 --omega-geometry 0`",
    "demo_repel": "demo + repulsion",
    "steplr0_omegageom0_repel": "both options + repulsion",
}
SIZE_BINS = ((1, 4), (5, 6), (7, 9), (10, 12), (13, 18))


def _value(metrics: dict, name: str) -> float:
    return float(metrics[name]["value"])


def _rows(variant: str, metrics_json: Path) -> list[str]:
    from dosmatgen.evaluate.score import load_metrics

    d = load_metrics(metrics_json)
    parts = [("all", d["n_structures"], d["metrics"])]
    parts += [(src, part["n_structures"], part["metrics"]) for src, part in sorted(d.get("by_source", {}).items())]
    return [f"| {LABELS[variant]} | {src} | {n} | {_value(m, 'validity'):.1f} | {_value(m, 'structure_match_rate'):.2f} "
            f"| {_value(m, 'composition_match_rate'):.2f} | {_value(m, 'element_accuracy'):.2f} | {_value(m, 'mae_gen_y'):.3f} |"
            for src, n, m in parts]


def _size_row(variant: str, per_structure: Path) -> str:
    rows = [r for r in csv.DictReader(per_structure.open()) if r["source"] == "mp20"]
    cells = []
    for lo, hi in SIZE_BINS:
        part = [r for r in rows if lo <= int(r["n_atoms"]) <= hi]
        if part:
            cells.append(f"{sum(not r['validity_reason'] for r in part)} / {len(part)}")
        else:
            cells.append("—")
    return f"| {LABELS[variant]} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    from dosmatgen.io import atomic_write

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--t0", type=int, default=1000)
    ap.add_argument("--demo-metrics", default=str(ROOT / "work" / "demo" / "metrics"))
    ap.add_argument("--options-work", default=str(ROOT / "work" / "demo_sampling_options"))
    ap.add_argument("--out", default=None, help="also write the Markdown here (atomic)")
    args = ap.parse_args(argv)

    name = f"cfg_T{args.t0}"
    sources = {"demo": Path(args.demo_metrics)}
    sources.update({v: Path(args.options_work) / v / "metrics" for v in LABELS if v != "demo"})
    found = {v: p for v, p in sources.items() if (p / f"{name}.json").exists()}
    if "demo" not in found:
        print(f"no {name}.json in {args.demo_metrics}", file=sys.stderr)
        return 2
    lines = [f"CFG, T = {args.t0} (from the prior); validity, match rates and element accuracy in %, "
             "MAE(ŷ_gen, y) in states/eV/site.", "",
             "| sampling | source | n | validity | struct. match | comp. match | elem. acc. | MAE(ŷ_gen, y) |",
             "|---|---|---|---|---|---|---|---|"]
    for variant, path in found.items():
        lines += _rows(variant, path / f"{name}.json")
    bins = " | ".join(f"{lo}-{hi} atoms" for lo, hi in SIZE_BINS)
    lines += ["", "Valid real (MP-20) test crystals by atoms per cell:", "",
              f"| sampling | {bins} |", "|---|" + "---|" * len(SIZE_BINS)]
    lines += [_size_row(v, p / f"{name}.per_structure.csv") for v, p in found.items()]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        with atomic_write(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
