"""The built-in dataset builder (``resources/builtin_dos.npz``): prototype crystals with element
substitutions (:mod:`.prototypes`) and real MP-20 crystals (:mod:`.mp20`), labelled with GPAW site
DOS into resumable shards (:mod:`.build`), or labelled on another machine (:mod:`.offsite`).

A one-off generator, outside the package: the package only reads what it writes
(:func:`dosmatgen.data.store.read_shards`, ``dosmatgen data merge --source builtin``,
``dosmatgen data info --store resources/builtin``).  Run from the repository root::

    .venv/bin/python -m dev_scripts.builtin --help
"""
