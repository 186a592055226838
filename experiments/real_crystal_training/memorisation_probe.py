"""Write a split whose test part is 100 of the demo model's own real *training* crystals (evenly
spaced through the training part's real crystals; removed from its training list only because a
split may not hold an id twice), so that `evaluate regenerate` / `score` measure how well the model
regenerates crystals it was trained on: beside the 100 real test crystals, the gap between seen and
unseen targets (issue 35: memorisation or under-fitting).

    .venv/bin/python experiments/real_crystal_training/memorisation_probe.py RUN/split.json OUT_split.json
"""

from __future__ import annotations

import json
import sys

import numpy as np

from dosmatgen.data.split import record_source


def main(split_path: str, out_path: str, n: int = 100) -> None:
    split = json.load(open(split_path))
    real = [i for i in split["train"] if record_source(i) == "mp20"]
    seen = [real[int(k)] for k in np.linspace(0, len(real) - 1, n)]
    chosen = set(seen)
    out = {"train": [i for i in split["train"] if i not in chosen], "val": split["val"], "test": seen}
    with open(out_path, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
