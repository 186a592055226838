"""Supercells of labelled crystals: more atoms per cell at no DFT cost.

A supercell is the same crystal in a larger cell, so each copy of a site has that site's DOS
exactly: the labels carry over without a calculation. A training option (not the paper's recipe,
``dosmatgen train --supercells``): a store of small prototype cells gives the generator few cells
of 7-12 atoms, where its generated crystals put two atoms on one site
(``results/validity_probe/``); doubled cells show it many more such cells, each with the site
spacing of a real crystal. Measured there on the compact model (``store309``, 3 seeds): no
change in validity, so it stays off in every profile.

>>> from dosmatgen.data.schema import CrystalRecord
>>> nacl = CrystalRecord("builtin-NaCl", [11, 17], [[0, 0, 0], [.5, .5, .5]], 5.6 * np.eye(3),
...                      dos=np.ones((2, 400)))
>>> big = doubled_cell(nacl, axis=2)
>>> big.structure_id, big.num_atoms, float(big.lattice[2, 2]), big.frac_coords[:, 2].tolist()
('builtin-NaCl~2c', 4, 11.2, [0.0, 0.25, 0.5, 0.75])
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.errors import ConfigError

AXES = "abc"


def doubled_cell(record: CrystalRecord, axis: int) -> CrystalRecord:
    """``record`` as a 2-fold supercell along lattice vector ``axis`` (0, 1, 2): atoms i and N + i
    are the two copies of site i, half a new cell vector apart, with site i's DOS. The id gains
    ``~2a``/``~2b``/``~2c``, so :func:`dosmatgen.data.split.record_source` still names its source."""
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2, got {axis!r}")
    frac = record.frac_coords % 1.0
    frac[:, axis] /= 2.0
    shifted = frac.copy()
    shifted[:, axis] += 0.5
    lattice = record.lattice.copy()
    lattice[axis] *= 2.0
    dos = None if record.dos is None else np.concatenate([record.dos, record.dos])
    return CrystalRecord(f"{record.structure_id}~2{AXES[axis]}",
                         np.concatenate([record.atomic_numbers, record.atomic_numbers]),
                         np.concatenate([frac, shifted]), lattice, dos,
                         {**record.provenance, "supercell_of": record.structure_id})


def supercell_axis(structure_id: str, seed: int) -> int:
    """The lattice vector a crystal is doubled along: a hash of its id and ``seed``, so it does not
    depend on the order or the set of records (a crystal gets the same supercell in every run)."""
    return zlib.crc32(f"{seed}:{structure_id}".encode()) % 3


def check_max_atoms(max_atoms: int | None) -> None:
    """Raise :class:`ConfigError` unless ``max_atoms`` is None or an integer >= 2."""
    if max_atoms is not None and (isinstance(max_atoms, bool) or not isinstance(max_atoms, int) or max_atoms < 2):
        raise ConfigError(f"supercell max_atoms must be an integer >= 2 or null, got {max_atoms!r}")


def with_supercells(records: Sequence[CrystalRecord], max_atoms: int | None, seed: int = 0) -> list[CrystalRecord]:
    """``records`` followed by one doubled cell (:func:`doubled_cell`, axis from
    :func:`supercell_axis`) of each record with at most ``max_atoms / 2`` atoms; ``None``: the
    records unchanged (the paper's recipe).

    >>> from dosmatgen.data.schema import CrystalRecord
    >>> recs = [CrystalRecord(f"builtin-{n}", [14] * n, np.random.default_rng(n).random((n, 3)),
    ...                       6 * np.eye(3)) for n in (2, 5, 7)]
    >>> [r.num_atoms for r in with_supercells(recs, 10)]
    [2, 5, 7, 4, 10]
    """
    check_max_atoms(max_atoms)
    if max_atoms is None:
        return list(records)
    extra = [doubled_cell(r, supercell_axis(r.structure_id, seed)) for r in records if 2 * r.num_atoms <= max_atoms]
    return list(records) + extra
