"""The generation service (paper §2.3-2.4, §3): sampler options, specs, the reverse loop, guidance,
one chunked and resumable runner, the generated-set format and its writers.

Every caller (``evaluate regenerate``, the studies, ``dosmatgen sample``, ``bench``, ``plan``)
builds a spec (:mod:`~dosmatgen.generate.specs`) and calls :func:`generate` with one
:class:`SamplerOptions`.
"""

from dosmatgen.generate.generated import GeneratedSet, load_generated, save_generated
from dosmatgen.generate.options import GUIDANCE_MODES, SamplerOptions
from dosmatgen.generate.runner import generate, regenerate

__all__ = ["GUIDANCE_MODES", "GeneratedSet", "SamplerOptions", "generate", "load_generated", "regenerate",
           "save_generated"]
