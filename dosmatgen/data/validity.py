"""Validity of a generated crystal (the CDVAE/DiffCSP convention the paper's Table 2 follows):
buildable, finite, known elements, a non-degenerate cell, enough volume per atom, and no two atoms
closer than :data:`~dosmatgen.data.schema.MIN_DISTANCE` Å (periodic images included)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dosmatgen.data.plausibility import MAX_FRACTIONAL
from dosmatgen.data.schema import MAX_Z, MIN_DISTANCE

#: A structure with less volume per atom than this (Å^3) is invalid.
MIN_VOLUME_PER_ATOM: float = 0.1
#: A generated lattice vector longer than this (Å, 0.1 mm) is no cell of anything: "implausible".
#: Looser than the readers' CELL_LENGTH on purpose: validity keeps the CDVAE/DiffCSP convention,
#: under which an untrained model's 2e4 Å cells count as valid.
MAX_LATTICE_LENGTH: float = 1e6


def build_structure(atomic_numbers: np.ndarray, frac_coords: np.ndarray, lattice: np.ndarray):
    """Return ``(Structure, None)`` or ``(None, reason)`` for raw generated arrays.

    Reasons: ``"empty"``, ``"non_finite"``, ``"unknown_element"``, ``"degenerate_lattice"``
    (|det L| below 1e-6 Å^3). Fractional coordinates are wrapped into [0, 1).
    """
    from pymatgen.core import Lattice, Structure

    z = np.asarray(atomic_numbers).reshape(-1)
    x = np.asarray(frac_coords, dtype=np.float64)
    lat = np.asarray(lattice, dtype=np.float64)
    if z.size == 0:
        return None, "empty"
    if x.shape != (z.size, 3) or lat.shape != (3, 3) or not (np.all(np.isfinite(x)) and np.all(np.isfinite(lat))):
        return None, "non_finite"
    if np.any(z < 1) or np.any(z > MAX_Z):
        return None, "unknown_element"
    if abs(float(np.linalg.det(lat))) < 1e-6:
        return None, "degenerate_lattice"
    try:
        return Structure(Lattice(lat), [int(v) for v in z], np.mod(x, 1.0)), None
    except Exception as exc:  # pymatgen refuses something we did not foresee
        return None, f"build_error:{type(exc).__name__}"


def min_periodic_distance(structure) -> float:
    """Smallest distance (Å) between two atoms or an atom and its own periodic image.

    The lattice is LLL-reduced first, so that the 27 neighbouring images suffice."""
    lll = structure.lattice.get_lll_reduced_lattice()
    frac = np.mod(lll.get_fractional_coords(structure.cart_coords), 1.0)
    m = lll.matrix
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    d = frac[None, :, None, :] - frac[:, None, None, :] + shifts[None, None, :, :]  # (N,N,27,3)
    dist = np.linalg.norm(d @ m, axis=-1)
    n = len(frac)
    zero = np.all(shifts == 0, axis=1)
    dist[np.arange(n), np.arange(n), np.flatnonzero(zero)[0]] = np.inf
    return float(dist.min())


def validity_reason(atomic_numbers, frac_coords, lattice) -> tuple[Any, str | None]:
    """``(structure_or_None, None)`` if valid, else ``(structure_or_None, reason)``; reasons are
    those of :func:`build_structure` plus ``"implausible"`` (a lattice vector beyond
    :data:`MAX_LATTICE_LENGTH` or a fractional coordinate beyond
    :data:`~dosmatgen.data.plausibility.MAX_FRACTIONAL`, where wrapping loses the position: a
    broken sample), ``"small_volume"`` and ``"overlapping_atoms"``."""
    s, why = build_structure(atomic_numbers, frac_coords, lattice)
    if s is None:
        return None, why
    if np.abs(frac_coords).max() > MAX_FRACTIONAL or np.linalg.norm(lattice, axis=1).max() > MAX_LATTICE_LENGTH:
        return s, "implausible"
    if s.volume / len(s) <= MIN_VOLUME_PER_ATOM:
        return s, "small_volume"
    if min_periodic_distance(s) < MIN_DISTANCE:
        return s, "overlapping_atoms"
    return s, None
