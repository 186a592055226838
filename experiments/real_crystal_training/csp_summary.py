"""The table of ``csp_probe.py``'s result files: per file the checkpoint, the crystals (split's test
part), the sampling seed, what the sampler changed from the demo's recipe (``csp_probe.demo_options``),
and the count matched.

    .venv/bin/python experiments/real_crystal_training/csp_summary.py DIR > DIR/summary.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from csp_probe import sampler_change  # the sibling script (this folder is on sys.path when run as a script)


def main() -> None:
    folder = Path(sys.argv[1])
    print("| file | checkpoint | crystals | sampling seed | sampler change | matched (elements clamped) |")
    print("|---|---|---|---|---|---|")
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        probes = (f"DDIM geometry steps, eta {r['ddim_eta']}",) if "ddim_eta" in r else ()
        change = sampler_change(r["sampler"], skip=("seed",), probes=probes)  # the seed has its own column
        part = Path(r["split"]).stem.removeprefix("split_test_")
        print(f"| {path.name} | `{'/'.join(Path(r['checkpoint']).parts[-2:])}` | {part} | {r['seed']} | {change} | "
              f"{r['structure_match']} of {r['n']} |")


if __name__ == "__main__":
    main()
