"""The demo's sampling recipe (``config/demo.yaml``'s ``generate`` section, ``csp_probe.demo_options``)
as ``dosmatgen evaluate regenerate`` flags, the fields equal to the sampler's defaults left out:
what gpu_paper_size.sh samples with.

    .venv/bin/python experiments/real_crystal_training/demo_flags.py
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from dosmatgen.config import cli_flags
from dosmatgen.generate.options import SamplerOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csp_probe import demo_options  # noqa: E402


def demo_flags() -> str:
    """The non-default fields of :func:`demo_options` as command-line flags."""
    defaults, options = SamplerOptions(), demo_options()
    return cli_flags({f.name: getattr(options, f.name) for f in dataclasses.fields(SamplerOptions)
                      if getattr(options, f.name) != getattr(defaults, f.name)})


if __name__ == "__main__":
    print(demo_flags())
