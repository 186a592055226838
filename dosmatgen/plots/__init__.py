"""dosmatgen.plots: one function per figure.

- :mod:`dosmatgen.plots.check`: the output gate (files parse, no NaN), ``dosmatgen figures check``.
- :mod:`dosmatgen.plots.formation`: paper Fig. 2 / Fig. B.1, formation-energy distributions.
- :mod:`dosmatgen.plots.gallery`: the ``figures/README.md`` gallery.
- :mod:`dosmatgen.plots.style`: shared look, colours, PNG + PDF saving.

Submodules import matplotlib lazily; importing this package costs nothing.
"""
