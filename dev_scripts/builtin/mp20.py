"""Real Materials Project crystals (MP-20) as a candidate source of the built-in dataset builder.

The pool (``resources/mp20/mp20_pool.json`` in the repository, see its README) holds MP-20
rows: ``material_id``, ``formula``, ``lattice`` (3x3 rows, Å), ``species``, ``frac_coords`` and
MP's ``formation_energy_per_atom``, ``band_gap``, ``e_above_hull`` and ``spacegroup``.  Each
usable row becomes an :class:`MP20Candidate` with id ``mp20-<material_id>``, labelled by
:func:`dev_scripts.builtin.build.build` with the same GPAW engine, protocol, ledgers and shards as the
prototype crystals (``python -m dev_scripts.builtin build --source mp20``).  The structures are MP's
DFT-relaxed geometries and are labelled as they are: no MLFF relaxation.

A row is skipped, with its reason, when it is malformed, its lattice is not a finite 3x3 matrix
with a volume, an element has no GPAW setup, or two atoms are closer than
:data:`dosmatgen.data.schema.MIN_DISTANCE` (0.5 Å).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dev_scripts.builtin.prototypes import is_magnetic
from dosmatgen.data.schema import MIN_DISTANCE, CrystalRecord
from dosmatgen.dos.gpaw_engine import GPAW_ELEMENTS, cost_estimate
from dosmatgen.errors import DataError
from dosmatgen.paths import RESOURCES

#: The MP-20 pool committed with the repository (``<repo>/resources/mp20/mp20_pool.json``).
DEFAULT_POOL: Path = RESOURCES / "mp20" / "mp20_pool.json"
#: Default largest cell (atoms) taken from the pool.
DEFAULT_MAX_ATOMS: int = 12
#: Name of the candidate source (``--source mp20``, provenance ``source``, ledger and shard names).
SOURCE: str = "mp20"

#: Kinds of skip reasons (each reason starts with one of these, then ``": "`` and the detail).
MALFORMED_ROW = "malformed row"
MALFORMED_LATTICE = "malformed lattice"
NO_GPAW_SETUP = "no GPAW setup"
OVERLAPPING_ATOMS = "overlapping atoms"
DUPLICATE_ID = "duplicate material_id"

#: GPAW cost of a spin-polarised MP-20 cell relative to :func:`~dosmatgen.dos.gpaw_engine.cost_estimate`'s
#: non-magnetic one.  The prototype build's 3x does not hold for MP-20: of the first three spin-polarised
#: MP-20 cells labelled here (2 atoms each), two took 2,381 and 2,992 s on one core, against a median of
#: 30 s for the eleven non-magnetic 2-atom cells and 20.9 s per atom over all 257 non-magnetic ones
#: (ledgers of 2026-12-01).  A coarse figure from few cells; what matters for the order is that it puts
#: every spin-polarised cell after every non-magnetic cell of up to 20 atoms (any factor above 7 does).
MAGNETIC_FACTOR: float = 50.0


@dataclass(frozen=True)
class MP20Candidate:
    """One MP-20 crystal to label: id, MP material id, cost estimate (s), spin, and its record."""

    structure_id: str
    material_id: str
    num_atoms: int
    cost: float
    magnetic: bool
    record: CrystalRecord = field(compare=False, repr=False)

    #: MP's geometries are DFT-relaxed already: the builder labels them without MLFF relaxation.
    relax: ClassVar[bool] = False

    def build(self) -> CrystalRecord:
        """A fresh copy of the unlabelled crystal (provenance: source, MP id and MP values)."""
        r = self.record
        return CrystalRecord(r.structure_id, r.atomic_numbers.copy(), r.frac_coords.copy(), r.lattice.copy(), None,
                             dict(r.provenance))

    def ledger_fields(self) -> dict[str, Any]:
        """What the ledger records besides id and outcome."""
        return {"source": SOURCE, "material_id": self.material_id}


def structure_id_for(material_id: str) -> str:
    """The structure id of an MP-20 row.

    >>> structure_id_for("mp-21")
    'mp20-mp-21'
    """
    return f"{SOURCE}-{material_id}"


def _float_or_none(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing or not a finite number."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def row_record(row: dict[str, Any]) -> CrystalRecord:
    """The unlabelled :class:`CrystalRecord` of one pool row; :class:`DataError` whose message starts
    with the skip kind (:data:`MALFORMED_ROW`, :data:`MALFORMED_LATTICE`, :data:`NO_GPAW_SETUP`,
    :data:`OVERLAPPING_ATOMS`) when the row cannot be labelled."""
    from ase.data import atomic_numbers

    if not isinstance(row, dict) or not isinstance(row.get("material_id"), str) or not row["material_id"]:
        raise DataError(f"{MALFORMED_ROW}: no material_id")
    species = row.get("species")
    if not isinstance(species, list) or not species or not all(isinstance(s, str) for s in species):
        raise DataError(f"{MALFORMED_ROW}: species must be a non-empty list of element symbols")
    try:
        frac = np.asarray(row.get("frac_coords"), dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{MALFORMED_ROW}: frac_coords are not numbers") from None
    if frac.shape != (len(species), 3) or not np.all(np.isfinite(frac)):
        raise DataError(f"{MALFORMED_ROW}: frac_coords must be {len(species)} finite (x, y, z), got shape {frac.shape}")
    try:
        lattice = np.asarray(row.get("lattice"), dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{MALFORMED_LATTICE}: not a 3x3 matrix of numbers") from None
    if lattice.shape != (3, 3):
        raise DataError(f"{MALFORMED_LATTICE}: shape {lattice.shape}, expected (3, 3)")
    if not np.all(np.isfinite(lattice)):
        raise DataError(f"{MALFORMED_LATTICE}: NaN or inf")
    volume = abs(float(np.linalg.det(lattice)))
    if volume < 1e-3:
        raise DataError(f"{MALFORMED_LATTICE}: zero volume ({volume:.2e} Å^3)")
    missing = sorted(set(species) - GPAW_ELEMENTS)
    if missing:
        raise DataError(f"{NO_GPAW_SETUP}: {', '.join(missing)}")
    mid = row["material_id"]
    prov = {"source": SOURCE, "material_id": mid, "formula": row.get("formula"),
            **{f"mp_{k}": _float_or_none(row.get(k))
               for k in ("formation_energy_per_atom", "band_gap", "e_above_hull")},
            "spacegroup": row.get("spacegroup")}
    rec = CrystalRecord(structure_id_for(mid), [atomic_numbers[s] for s in species], frac, lattice, None, prov)
    d = rec.min_distance()
    if d < MIN_DISTANCE:
        raise DataError(f"{OVERLAPPING_ATOMS}: minimum distance {d:.3f} Å < {MIN_DISTANCE} Å")
    return rec


def read_pool(path: str | Path = DEFAULT_POOL) -> list[dict[str, Any]]:
    """The rows of the pool file at ``path``; :class:`DataError` when it is missing or not a pool."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"MP-20 pool {path} does not exist (give --pool PATH)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"MP-20 pool {path} cannot be read as JSON ({type(exc).__name__}: {exc})") from None
    rows = obj.get("structures") if isinstance(obj, dict) else None
    if not isinstance(rows, list):
        raise DataError(f"MP-20 pool {path} has no 'structures' list")
    return rows


def candidates(pool: str | Path = DEFAULT_POOL, max_atoms: int | None = DEFAULT_MAX_ATOMS,
               n_max: int | None = None) -> tuple[list[MP20Candidate], list[tuple[str, str]]]:
    """The usable rows of ``pool`` with at most ``max_atoms`` atoms (None: any), cheapest first, cut
    to the first ``n_max``; and the skipped rows as ``(structure id, reason)``.

    The cost estimate is the prototype build's non-magnetic one
    (:func:`dosmatgen.dos.gpaw_engine.cost_estimate`, ``6 + 5 * atoms`` seconds of GPAW on one core),
    times :data:`MAGNETIC_FACTOR` (measured on MP-20 cells, not the prototypes' 3) when a magnetic
    element (Cr, Mn, Fe, Co, Ni) makes the run spin-polarised.  It ignores k-point count and
    element weight, so it only orders cells coarsely; ties go by atom count, then structure id.
    Cells over ``max_atoms`` are filtered out, not skipped (they are not in the returned reasons).
    """
    if max_atoms is not None and max_atoms < 1:
        raise DataError(f"--max-atoms must be >= 1, got {max_atoms}")
    if n_max is not None and n_max < 0:
        raise DataError(f"--n-max must be >= 0, got {n_max}")
    out: list[MP20Candidate] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, row in enumerate(read_pool(pool)):
        mid = row.get("material_id") if isinstance(row, dict) else None
        sid = structure_id_for(mid) if isinstance(mid, str) and mid else f"{SOURCE}-row{i}"
        if sid in seen:
            skipped.append((sid, f"{DUPLICATE_ID}: row {i} repeats it"))
            continue
        seen.add(sid)
        try:
            rec = row_record(row)
        except DataError as exc:
            skipped.append((sid, str(exc)))
            continue
        if max_atoms is not None and rec.num_atoms > max_atoms:
            continue
        symbols = tuple(row["species"])
        mag = is_magnetic(symbols)
        cost = cost_estimate(rec.num_atoms, False) * (MAGNETIC_FACTOR if mag else 1.0)
        out.append(MP20Candidate(sid, mid, rec.num_atoms, cost, mag, rec))
    out.sort(key=lambda c: (c.cost, c.num_atoms, c.structure_id))
    return (out if n_max is None else out[:n_max]), skipped


def skip_summary(skipped: list[tuple[str, str]]) -> dict[str, int]:
    """Skipped rows counted by kind (the reason before its first ``": "``).

    >>> skip_summary([("a", "no GPAW setup: La"), ("b", "no GPAW setup: U"), ("c", "overlapping atoms: x")])
    {'no GPAW setup': 2, 'overlapping atoms': 1}
    """
    return dict(Counter(reason.split(": ", 1)[0] for _, reason in skipped))
