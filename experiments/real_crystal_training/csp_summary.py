"""The table of ``csp_probe.py``'s result files: per file the checkpoint, the crystals (split's test
part), the sampling seed, what the sampler changed from the demo's recipe, and the count matched.

    .venv/bin/python experiments/real_crystal_training/csp_summary.py DIR > DIR/summary.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEMO = {"step_lr": 0.0, "geometry_temperature": 0.5}


def main() -> None:
    folder = Path(sys.argv[1])
    print("| file | checkpoint | crystals | sampling seed | sampler change | matched (elements clamped) |")
    print("|---|---|---|---|---|---|")
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        change = ", ".join(f"{k} {r['sampler'][k]:g}" for k, v in DEMO.items() if r["sampler"][k] != v) or "—"
        part = Path(r["split"]).stem.removeprefix("split_test_")
        print(f"| {path.name} | `{'/'.join(Path(r['checkpoint']).parts[-2:])}` | {part} | {r['seed']} | {change} | "
              f"{r['structure_match']} of {r['n']} |")


if __name__ == "__main__":
    main()
