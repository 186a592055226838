"""Probe (issue 35, session 9): does the geometry sharpen if the last reverse steps carry no
geometry noise? Runs ``dosmatgen evaluate regenerate`` with the given arguments, the sampler's
geometry temperature set to 0 for every step whose target time s is below CUT (the chain's own
temperature, e.g. ``--geometry-temperature 0.5``, above it). Not a sampler option: a monkeypatch
of the private chain, kept here to record how the probe's rows were made.

    .venv/bin/python experiments/real_crystal_training/geometry_anneal_probe.py CUT regenerate-args...
"""

from __future__ import annotations

import sys

from dosmatgen.cli import main
from dosmatgen.generate import sampler


def patch(cut: int) -> None:
    step = sampler._Chain.step

    def annealed(self, state, t, s, *args, **kwargs):
        if s >= cut:
            return step(self, state, t, s, *args, **kwargs)
        kept, self.geometry_temperature = self.geometry_temperature, 0.0
        try:
            return step(self, state, t, s, *args, **kwargs)
        finally:
            self.geometry_temperature = kept

    sampler._Chain.step = annealed


if __name__ == "__main__":
    patch(int(sys.argv[1]))
    sys.exit(main(["evaluate", "regenerate", *sys.argv[2:]]))
