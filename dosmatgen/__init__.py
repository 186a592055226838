"""dosmatgen: crystal generation guided by per-atom electronic density of states.

A replication of "Electronic structure guided inverse design using generative models"
(DOSMatGen, Jia, Ganesh & Fung). Importing the package has no side effects and loads nothing
heavy: the Python API (:mod:`dosmatgen.api`) is imported on first use of one of its names.

>>> import dosmatgen as dm
>>> sorted(dm.__all__)[:3]
['Candidate', 'Model', 'SamplerOptions']
"""

__version__ = "0.1.0"

#: The public Python API (dosmatgen.api): from a target site DOS to candidate crystals.
__all__ = ["Candidate", "Model", "SamplerOptions", "Target", "generate_crystals", "load_model", "normalise_to_training",
           "predict_site_dos", "relax_and_rank", "target_from_array", "target_from_dos", "target_from_file",
           "target_from_store"]


def __getattr__(name: str):
    """The API's names, imported when first asked for (PEP 562), so that ``import dosmatgen`` stays
    light and the layers below can read ``dosmatgen.__version__``."""
    if name in __all__:
        from dosmatgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'dosmatgen' has no attribute {name!r}")
