"""One record type for every data source (docs/data.md): a crystal and the DOS of each site.

>>> import numpy as np
>>> rec = CrystalRecord("NaCl", np.array([11, 17]), np.array([[0, 0, 0], [.5, .5, .5]]),
...                     np.eye(3) * 4.0, np.zeros((2, 400)))
>>> rec.num_atoms, rec.formula
(2, 'NaCl')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import DataError

#: Largest atomic number the models know (one-hot width Z). Covers every element with a GPAW setup
#: and every element in the Materials Project DOS set.
MAX_Z: int = 100
#: Two atoms closer than this (Å, periodic images included) make a structure invalid.
MIN_DISTANCE: float = 0.5


@dataclass
class CrystalRecord:
    """A periodic crystal with a site DOS per atom.

    Attributes:
        structure_id: unique id (``mp-1234``, ``builtin-rocksalt-NaCl`` ...).
        atomic_numbers: (N,) int.
        frac_coords: (N, 3) fractional coordinates.
        lattice: (3, 3) lattice vectors as rows, Å.
        dos: (N, 400) site DOS in states/eV/site on :data:`dosmatgen.dos.grid.ENERGY_GRID`,
            or ``None`` for an unlabelled structure (a template, a generated crystal).
        provenance: free-form dict (source, engine, versions, protocol).
    """

    structure_id: str
    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lattice: np.ndarray
    dos: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.atomic_numbers = np.asarray(self.atomic_numbers, dtype=np.int64).reshape(-1)
        self.frac_coords = np.asarray(self.frac_coords, dtype=np.float64)
        self.lattice = np.asarray(self.lattice, dtype=np.float64)
        if self.dos is not None:
            self.dos = np.asarray(self.dos, dtype=np.float32)
        self.validate()

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def formula(self) -> str:
        return self.to_structure().composition.reduced_formula

    def validate(self, check_distances: bool = False) -> None:
        """Raise :class:`DataError` naming the first problem found."""
        sid = self.structure_id
        n = self.atomic_numbers.shape[0]
        if n == 0:
            raise DataError(f"{sid}: structure has zero atoms")
        bad_z = [int(z) for z in self.atomic_numbers if z < 1 or z > MAX_Z]
        if bad_z:
            raise DataError(f"{sid}: unknown element(s) with atomic number {bad_z} (allowed 1..{MAX_Z})")
        if self.frac_coords.shape != (n, 3):
            raise DataError(f"{sid}: frac_coords has shape {self.frac_coords.shape}, expected ({n}, 3)")
        if not np.all(np.isfinite(self.frac_coords)):
            raise DataError(f"{sid}: frac_coords contain NaN or inf")
        if self.lattice.shape != (3, 3) or not np.all(np.isfinite(self.lattice)):
            raise DataError(f"{sid}: lattice must be a finite 3x3 matrix, got shape {self.lattice.shape}")
        volume = abs(float(np.linalg.det(self.lattice)))
        if volume < 1e-3:
            raise DataError(f"{sid}: lattice has zero volume ({volume:.2e} Å^3)")
        if self.dos is not None:
            if self.dos.shape != (n, N_DOS):
                raise DataError(f"{sid}: DOS has shape {self.dos.shape}, expected ({n}, {N_DOS})")
            if not np.all(np.isfinite(self.dos)):
                raise DataError(f"{sid}: DOS contains NaN or inf")
        if check_distances:
            d = self.min_distance()
            if d < MIN_DISTANCE:
                raise DataError(f"{sid}: atoms overlap (minimum distance {d:.3f} Å < {MIN_DISTANCE} Å)")

    def min_distance(self) -> float:
        """Smallest interatomic distance in Å, periodic images included (inf for one atom alone
        in a large cell)."""
        s = self.to_structure()
        if len(s) == 1:
            return float(min(s.lattice.abc))
        dm = s.distance_matrix + np.eye(len(s)) * 1e9
        return float(min(dm.min(), min(s.lattice.abc)))

    # ---- pymatgen / ASE --------------------------------------------------------------------
    def to_structure(self):
        """pymatgen ``Structure`` (DOS not attached)."""
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), [int(z) for z in self.atomic_numbers], self.frac_coords)

    @classmethod
    def from_structure(cls, structure, structure_id: str, dos: np.ndarray | None = None,
                       provenance: dict[str, Any] | None = None) -> "CrystalRecord":
        from pymatgen.core.periodic_table import DummySpecies

        zs = []
        for site in structure:
            if not site.is_ordered:
                raise DataError(f"{structure_id}: disordered site {site.species} is not supported")
            if isinstance(site.specie, DummySpecies):  # an unknown symbol; its "Z" is a hash
                raise DataError(f"{structure_id}: {site.specie.symbol!r} is not a chemical element")
            zs.append(site.specie.Z)
        return cls(structure_id, np.array(zs), structure.frac_coords, structure.lattice.matrix,
                   dos, dict(provenance or {}))

    def to_atoms(self):
        """ASE ``Atoms`` with the DOS in ``atoms.arrays['dos']`` when present."""
        from ase import Atoms

        atoms = Atoms(numbers=self.atomic_numbers, scaled_positions=self.frac_coords,
                      cell=self.lattice, pbc=True)
        atoms.info["structure_id"] = self.structure_id
        if self.dos is not None:
            atoms.arrays["dos"] = self.dos.astype(np.float64)
        return atoms

    @classmethod
    def from_atoms(cls, atoms, structure_id: str | None = None) -> "CrystalRecord":
        dos = atoms.arrays.get("dos")
        sid = structure_id or str(atoms.info.get("structure_id", atoms.get_chemical_formula()))
        return cls(sid, atoms.numbers, atoms.get_scaled_positions(wrap=False), atoms.cell.array, dos)

    # ---- the reference code's JSON format -----------------------------------------------------
    def to_reference_json(self) -> dict[str, Any]:
        """``{structure_id, positions (Cartesian Å), cell, atomic_numbers, y}`` as the public
        DOSMatGen / MatDeepLearn code reads it."""
        return {
            "structure_id": self.structure_id,
            "positions": (self.frac_coords @ self.lattice).tolist(),
            "cell": self.lattice.tolist(),
            "atomic_numbers": self.atomic_numbers.tolist(),
            "y": None if self.dos is None else self.dos.astype(float).tolist(),
        }

    @classmethod
    def from_reference_json(cls, obj: dict[str, Any]) -> "CrystalRecord":
        """One entry parsed; its reader (:mod:`dosmatgen.data.reference_json`) then checks the
        plausibility bounds, the interatomic distances and the DOS sign."""
        missing = [k for k in ("structure_id", "positions", "cell", "atomic_numbers") if k not in obj]
        if missing:
            raise DataError(f"reference JSON record lacks key(s) {missing}")
        cell = np.asarray(obj["cell"], dtype=np.float64)
        pos = np.asarray(obj["positions"], dtype=np.float64)
        if cell.shape != (3, 3):
            raise DataError(f"{obj['structure_id']}: cell has shape {cell.shape}, expected (3, 3)")
        if abs(np.linalg.det(cell)) < 1e-3:
            raise DataError(f"{obj['structure_id']}: lattice has zero volume")
        frac = np.linalg.solve(cell.T, pos.reshape(-1, 3).T).T
        z = np.asarray(obj["atomic_numbers"], dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(z)) or np.any(z != np.round(z)):
            raise DataError(f"{obj['structure_id']}: atomic numbers must be whole numbers, got "
                            f"{[float(v) for v in z if not np.isfinite(v) or v != round(v)][:3]}")
        y = obj.get("y")
        return cls(str(obj["structure_id"]), z.astype(np.int64), frac, cell,
                   None if y is None else np.asarray(y, dtype=np.float32), {"source": "reference-json"})


def element_symbol(z: int) -> str:
    """The symbol of atomic number ``z`` (``"?"`` outside 1..118).

    >>> element_symbol(28), element_symbol(150)
    ('Ni', '?')
    """
    from pymatgen.core.periodic_table import Element

    return Element.from_Z(int(z)).symbol if 1 <= int(z) <= 118 else "?"


def atomic_number(name: str | int, max_z: int = MAX_Z) -> int:
    """The atomic number of an element symbol in any case, or of a number, within 1..``max_z``.

    >>> atomic_number("ni"), atomic_number("8"), atomic_number(26)
    (28, 8, 26)
    """
    from pymatgen.core.periodic_table import Element

    text = str(name).strip()
    try:
        z = int(text) if text.isdigit() else Element(text[:1].upper() + text[1:].lower()).Z
    except (ValueError, KeyError):
        raise DataError(f"unknown element {name!r}") from None
    if not 1 <= z <= max_z:
        raise DataError(f"element {name!r} (Z={z}) is outside the types 1..{max_z}")
    return z


def require_site_dos(records: Sequence[CrystalRecord], purpose: str) -> list[CrystalRecord]:
    """``records`` as a list, or :class:`DataError` when there are none or one lacks its site DOS
    (``purpose`` completes the message: "to look up", "to condition on").

    >>> require_site_dos([], "to look up")
    Traceback (most recent call last):
    ...
    dosmatgen.errors.DataError: no test structures to look up
    """
    records = list(records)
    if not records:
        raise DataError(f"no test structures {purpose}")
    missing = [r.structure_id for r in records if r.dos is None]
    if missing:
        raise DataError(f"{len(missing)} test structure(s) have no site DOS {purpose}, e.g. {missing[0]}")
    return records


#: A site DOS whose negative part exceeds this multiple of its positive part is refused where new
#: data enter (reference JSON, target files): it is mostly negative, a sign or units error.
#: Projected DOS can dip below zero (Mulliken weights): 8 of the built-in store's 4,615 sites have
#: a negative part above 10 % of their positive part, the worst 139 %; none is refused.
MAX_NEGATIVE_FRACTION: float = 1.5


def check_dos_sign(dos: np.ndarray, what: str) -> None:
    """:class:`DataError` unless every row of ``dos`` is mostly non-negative (see
    :data:`MAX_NEGATIVE_FRACTION`).

    >>> check_dos_sign(-np.ones((1, 400)), "target")
    Traceback (most recent call last):
    ...
    dosmatgen.errors.DataError: target: DOS row 0 is mostly negative (negative part 100 % of the total |DOS|); a DOS is >= 0
    """
    d = np.asarray(dos, dtype=np.float64).reshape(-1, np.asarray(dos).shape[-1])
    neg = np.clip(-d, 0, None).sum(axis=1)
    pos = np.clip(d, 0, None).sum(axis=1)
    bad = np.flatnonzero(neg > MAX_NEGATIVE_FRACTION * pos)
    if bad.size:
        i = int(bad[0])
        share = 100 * neg[i] / max(neg[i] + pos[i], 1e-300)
        raise DataError(f"{what}: DOS row {i} is mostly negative (negative part {share:.0f} % of the total |DOS|); "
                        "a DOS is >= 0")
