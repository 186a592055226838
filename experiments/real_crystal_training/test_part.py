"""A split whose test part is one source's crystals (or all of them), the train and validation
parts unchanged: what run.sh and gpu_paper_size.sh regenerate.

    .venv/bin/python experiments/real_crystal_training/test_part.py SPLIT OUT.json mp20|prototypes|all
"""

from __future__ import annotations

import argparse
import json

from dosmatgen.data.split import record_source
from dosmatgen.io import atomic_save_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("split")
    p.add_argument("out")
    p.add_argument("part", help="a source (mp20, prototypes) or all")
    args = p.parse_args()
    split = json.load(open(args.split))
    test = [i for i in split["test"] if args.part == "all" or record_source(i) == args.part]
    if not test:
        raise SystemExit(f"test_part.py: no test crystal of source {args.part!r} in {args.split}")
    atomic_save_json(args.out, {"train": split["train"], "val": split["val"], "test": test})


if __name__ == "__main__":
    main()
