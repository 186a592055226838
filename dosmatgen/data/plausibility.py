"""Physical plausibility at the edges (issue 34): the one validator every reader of crystals and
site DOS uses (stores, ``data import-json``, targets, templates, the command line's atom counts,
``data split``). Each bound is named, has its reason, and appears in the error, so a unit slip (nm
for Å, a 1e7 Å cell), a zero lattice or an all-zero DOS stops where it enters instead of training
to a loss of 1e13. Generated sets keep their broken samples (NaN, absurd cells) so that the
metrics count them: :func:`dosmatgen.data.validity.validity_reason` calls them invalid.

>>> import numpy as np
>>> structure_problem(np.eye(3) * 4, np.zeros((2, 3)))
>>> structure_problem(np.eye(3) * 1e7, np.zeros((2, 3)))
'cell length 1e+07 Å outside CELL_LENGTH = (0.5, 500.0) Å'
>>> check_dos(np.zeros((2, 400)), "x")
Traceback (most recent call last):
...
dosmatgen.errors.DataError: x: DOS of row 0 is zero everywhere (a labelled site has states within ±10 eV)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dosmatgen.data.schema import MIN_DISTANCE
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import DataError

#: Lattice vector lengths (Å). Below MIN_DISTANCE an atom overlaps its own periodic image; the
#: longest vector of the built-in store is 41 Å, of every generated set in results/ 129 Å, of the
#: Materials Project's DOS set about 100 Å: 500 Å is a unit slip (nm, bohr) or a broken sample.
CELL_LENGTH: tuple[float, float] = (MIN_DISTANCE, 500.0)
#: Volume per atom (Å^3). The densest solids hold 5-6 Å^3 per atom (diamond 5.7; the built-in
#: store 5.5 to 202); below 1 a coplanar or collapsed cell, above 5000 a gas, not a crystal.
VOLUME_PER_ATOM: tuple[float, float] = (1.0, 5000.0)
#: Largest |fractional coordinate| read; smaller ones are wrapped into [0, 1) where they are used
#: (the model's batches, pymatgen structures). Beyond it float64 wrapping loses the position
#: (2.5e299 keeps no digit of it).
MAX_FRACTIONAL: float = 1e3
#: Largest |site DOS| (states/eV/site). The built-in store peaks at 26; seven f states within the
#: grid's 0.05 eV spacing give about 140; 1000 leaves room and stays far inside float16 (65504).
MAX_DOS: float = 1e3
#: Most atoms in one crystal to generate. The denoiser is a fully connected graph (N^2 edges per
#: crystal): 500 atoms take about 1 GB of edge activations, 100000 atoms 160 GB for one index.
MAX_ATOMS: int = 500


def structure_problem(lattice: np.ndarray, frac_coords: np.ndarray) -> str | None:
    """The first bound a cell breaks (naming it), or None; shapes and finiteness are the
    record's own checks (:meth:`~dosmatgen.data.schema.CrystalRecord.validate`)."""
    problems = cell_problems(np.asarray(lattice, dtype=np.float64)[None], [len(frac_coords)],
                             np.asarray(frac_coords, dtype=np.float64))
    return problems[0][1] if problems else None


def cell_problems(lattices: np.ndarray, num_atoms: Sequence[int], frac_coords: np.ndarray) -> list[tuple[int, str]]:
    """``(structure index, problem)`` for every structure of a stack that breaks a bound:
    ``lattices`` (S, 3, 3), ``num_atoms`` (S,), ``frac_coords`` (sum N, 3) concatenated."""
    lattices = np.asarray(lattices, dtype=np.float64)
    counts = np.asarray(num_atoms, dtype=np.int64)
    lengths = np.linalg.norm(lattices, axis=-1)
    with np.errstate(all="ignore"):
        per_atom = np.abs(np.linalg.det(lattices)) / np.maximum(counts, 1)
    frac = np.abs(np.asarray(frac_coords, dtype=np.float64)).reshape(-1, 3).max(axis=1, initial=0.0)
    worst = np.zeros(len(counts)) if frac.size == 0 else np.maximum.reduceat(
        frac, np.concatenate([[0], np.cumsum(counts)[:-1]])) * (counts > 0)
    out = []
    for i in np.flatnonzero((lengths.min(axis=1) < CELL_LENGTH[0]) | (lengths.max(axis=1) > CELL_LENGTH[1])
                            | (per_atom < VOLUME_PER_ATOM[0]) | (per_atom > VOLUME_PER_ATOM[1])
                            | (worst > MAX_FRACTIONAL)):
        bad = [v for v in lengths[i] if not CELL_LENGTH[0] <= v <= CELL_LENGTH[1]]
        if bad:
            out.append((int(i), f"cell length {bad[0]:.3g} Å outside CELL_LENGTH = {CELL_LENGTH} Å"))
        elif not VOLUME_PER_ATOM[0] <= per_atom[i] <= VOLUME_PER_ATOM[1]:
            hint = " (a coplanar or collapsed cell?)" if per_atom[i] < VOLUME_PER_ATOM[0] else ""
            out.append((int(i), f"volume per atom {per_atom[i]:.3g} Å^3 outside VOLUME_PER_ATOM = {VOLUME_PER_ATOM} "
                                f"Å^3{hint}"))
        else:
            out.append((int(i), f"fractional coordinate {worst[i]:.3g} beyond MAX_FRACTIONAL = {MAX_FRACTIONAL:g}"))
    return out


def check_cells(lattices: np.ndarray, num_atoms: Sequence[int], frac_coords: np.ndarray, ids: Sequence[str],
                where: str) -> None:
    """:class:`DataError` naming the first structure of a stack (see :func:`cell_problems`) that
    breaks a bound, and the bound."""
    problems = cell_problems(lattices, num_atoms, frac_coords)
    if problems:
        i, why = problems[0]
        more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"{where}: {ids[i]}: {why}{more}")


def check_dos(dos: np.ndarray, what: str, offsets: Sequence[int] | None = None) -> None:
    """:class:`DataError` unless ``dos`` (rows of :data:`~dosmatgen.dos.grid.N_DOS` points) is
    finite, within :data:`MAX_DOS`, and no structure's rows (``offsets``, as in a store; default:
    each row on its own, as targets are) are zero everywhere. ``what`` (may be empty) starts the message."""
    what = f"{what}: " if what else ""
    d = np.asarray(dos)
    if d.ndim != 2 or d.shape[1] != N_DOS:
        raise DataError(f"{what}DOS has shape {d.shape}; each row has N_DOS = {N_DOS} points (-10..10 eV)")
    if not np.all(np.isfinite(d)):
        raise DataError(f"{what}DOS contains NaN or inf")
    peak = float(np.abs(d).max(initial=0.0))
    if peak > MAX_DOS:
        raise DataError(f"{what}DOS value {peak:.3g} beyond MAX_DOS = {MAX_DOS:g} states/eV/site (units?)")
    bounds = np.arange(len(d) + 1) if offsets is None else np.asarray(offsets, dtype=np.int64)
    rows = np.abs(d).sum(axis=1, dtype=np.float64)
    totals = np.add.reduceat(rows, bounds[:-1]) if len(d) else np.zeros(0)
    empty = np.flatnonzero((totals == 0) & (np.diff(bounds) > 0))
    if empty.size:
        unit = "row" if offsets is None else "structure"
        raise DataError(f"{what}DOS of {unit} {int(empty[0])} is zero everywhere (a labelled site has states "
                        "within ±10 eV)")


def check_record(record, what: str = "") -> None:
    """A new record (imported, a template): its cell within the bounds, its DOS (when labelled)
    as :func:`check_dos` wants it for one structure. ``what`` (may be empty) starts the message."""
    problem = structure_problem(record.lattice, record.frac_coords)
    if problem:
        raise DataError(f"{what}: {problem}" if what else problem)
    if record.dos is not None:
        check_dos(record.dos, what, offsets=[0, record.num_atoms])


def check_split_parts(split: dict[str, Sequence[str]], what: str) -> None:
    """:class:`DataError` when a part of a split is empty: validation picks ``best.pt`` and the
    learning rate, the test part is what every table reports; each needs a structure."""
    empty = [k for k in ("train", "val", "test") if not split.get(k)]
    if empty:
        sizes = ", ".join(f"{k} {len(split.get(k) or [])}" for k in ("train", "val", "test"))
        raise DataError(f"{what}: split part(s) {empty} would be empty ({sizes}); every part needs at least "
                        "one structure (a larger store, or other --fractions)")
