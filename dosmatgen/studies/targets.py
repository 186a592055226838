"""Target site DOS for the constrained studies (paper §3.2, §3.3).

The paper conditions on two site DOS: Ni in L1_2 Au3Ni (mp-976806; §3.2) and Ir in rutile IrO2
(§3.3). With the built-in data (the default) both come from the dataset store in use, computed by
the same GPAW engine as every training label; with Materials Project data they come from MP via
:func:`dosmatgen.data.mp.fetch_mp_record` (the record, then the first site of the element,
as ``fetch_mp_target`` does).

Selection rule in a store (deterministic): records whose reduced formula is the preset's formula,
that carry a DOS, and whose space group (pymatgen ``SpacegroupAnalyzer``, symprec 0.1) is the
preset's (Pm-3m, 221, for L1_2; P4_2/mnm, 136, for rutile); ties broken by ``structure_id``. The
target is the DOS of the first site of the preset's element (the L1_2 and rutile sites of that
element are symmetry-equivalent, and the engine averages equivalent sites anyway).

>>> sorted(PRESETS)
['ir-iro2', 'ni-au3ni']
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.data.schema import CrystalRecord, check_dos_sign, element_symbol
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import ConfigError, DataError


@dataclass(frozen=True)
class TargetPreset:
    """A named target: the element whose site DOS is wanted, in which crystal."""

    name: str
    formula: str  # reduced formula (any element order)
    element: str
    spacegroup: int
    mp_id: str
    description: str


PRESETS: dict[str, TargetPreset] = {
    "ni-au3ni": TargetPreset("ni-au3ni", "Au3Ni", "Ni", 221, "mp-976806",
                             "Ni site of L1_2 Au3Ni (paper §3.2: free-atom-like Ni d states)"),
    "ir-iro2": TargetPreset("ir-iro2", "IrO2", "Ir", 136, "mp-2723",
                            "Ir site of rutile IrO2 (paper §3.3: OER catalyst)"),
}


@dataclass
class TargetDOS:
    """One site DOS to condition on.

    Attributes:
        name: preset name or a free label.
        element: element symbol of the target site.
        dos: (400,) raw site DOS (states/eV/site) on :data:`dosmatgen.dos.grid.ENERGY_GRID`.
        structure_id: the crystal it was taken from.
        site_index: index of the site in that crystal.
        source: "store:<path>", "mp" or "array".
        record: the crystal itself (for plots and reports), if known.
    """

    name: str
    element: str
    dos: np.ndarray
    structure_id: str
    site_index: int
    source: str
    record: CrystalRecord | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.dos = np.asarray(self.dos, dtype=np.float64).reshape(-1)
        if self.dos.shape != (N_DOS,):
            raise DataError(f"target {self.name}: DOS has {self.dos.size} points, expected {N_DOS}")
        if not np.all(np.isfinite(self.dos)):
            raise DataError(f"target {self.name}: DOS contains NaN or inf")
        check_dos_sign(self.dos, f"target {self.name}")

    @property
    def formula(self) -> str:
        return self.record.formula if self.record is not None else ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "element": self.element, "structure_id": self.structure_id,
                "site_index": self.site_index, "source": self.source, "formula": self.formula,
                "dos": self.dos.tolist()}


def spacegroup_number(record: CrystalRecord, symprec: float = 0.1) -> int | None:
    """International space-group number of a record (None when spglib fails)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return int(SpacegroupAnalyzer(record.to_structure(), symprec=symprec).get_space_group_number())
    except Exception:  # spglib raises several types on degenerate cells
        return None


def site_of_element(record: CrystalRecord, element: str) -> int:
    """Index of the first site of ``element`` in ``record``."""
    from pymatgen.core import Element

    z = Element(element).Z
    idx = np.flatnonzero(record.atomic_numbers == z)
    if idx.size == 0:
        raise DataError(f"{record.structure_id} ({record.formula}) has no {element} site")
    return int(idx[0])


def find_target_in_records(records: Sequence[CrystalRecord], preset: str | TargetPreset,
                           structure_id: str | None = None, source: str = "records") -> TargetDOS:
    """Pick the target site DOS of ``preset`` from ``records`` (rule in the module docstring).

    Args:
        records: the dataset (any source) holding the target crystal with its DOS.
        preset: a :data:`PRESETS` name or a :class:`TargetPreset`.
        structure_id: use exactly this record (overrides the formula/space-group rule).
        source: label stored in :attr:`TargetDOS.source`.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    if structure_id is not None:
        rec = next((r for r in records if r.structure_id == structure_id), None)
        if rec is None:
            raise DataError(f"no record with structure_id {structure_id!r} in {source}")
    else:
        want = _normalise_formula(p.formula)
        same_formula = sorted((r for r in records if r.dos is not None and _reduced(r) == want),
                              key=lambda r: r.structure_id)
        if not same_formula:
            raise DataError(f"{source} has no labelled {p.formula} crystal for target {p.name}; "
                            "pass --target-structure ID to choose another crystal")
        right_group = [r for r in same_formula if spacegroup_number(r) == p.spacegroup]
        if not right_group:
            found = ", ".join(f"{r.structure_id} (SG {spacegroup_number(r)})" for r in same_formula)
            raise DataError(f"{source} has {p.formula} but none in space group {p.spacegroup} "
                            f"(found {found}); pass --target-structure ID to choose one")
        rec = right_group[0]
    if rec.dos is None:
        raise DataError(f"{rec.structure_id} in {source} has no site DOS")
    site = site_of_element(rec, p.element)
    return TargetDOS(p.name, p.element, rec.dos[site], rec.structure_id, site, source, rec)


def get_preset(name: str) -> TargetPreset:
    key = name.lower()
    if key not in PRESETS:
        raise ConfigError(f"unknown target {name!r}; known targets: {sorted(PRESETS)}")
    return PRESETS[key]


def load_target(preset: str, store: str | Path | None = None, structure_id: str | None = None,
                use_mp: bool = False, api_key: str | None = None) -> TargetDOS:
    """Target site DOS from the store in use (default) or from the Materials Project.

    Args:
        preset: "ni-au3ni" or "ir-iro2".
        store: dataset store (.npz of :mod:`dosmatgen.data.store`); required unless ``use_mp``.
        structure_id: a specific record of the store (or MP id with ``use_mp``).
        use_mp: fetch from MP (needs network and MP_API_KEY) with
            :func:`dosmatgen.data.mp.fetch_mp_record`.
    """
    p = get_preset(preset)
    if use_mp:
        return _load_mp_target(p, structure_id or p.mp_id, api_key)
    if store is None:
        raise ConfigError("a dataset store is needed to find the target DOS (--store PATH), or use --mp")
    from dosmatgen.data.store import load_records

    store = Path(store)
    if not store.exists():
        raise ConfigError(f"dataset store {store} does not exist")
    return find_target_in_records(load_records(store), p, structure_id, source=f"store:{store}")


def _load_mp_target(p: TargetPreset, mp_id: str, api_key: str | None) -> TargetDOS:
    try:
        from dosmatgen.data.mp import fetch_mp_record
    except ImportError as exc:
        raise ConfigError(f"Materials Project support is not available ({exc})") from exc
    rec = fetch_mp_record(mp_id, api_key)
    if rec.dos is None:
        raise DataError(f"the Materials Project record {mp_id} has no site DOS")
    site = site_of_element(rec, p.element)
    return TargetDOS(p.name, p.element, rec.dos[site], rec.structure_id, site, f"mp:{mp_id}", rec)


def _normalise_formula(formula: str) -> str:
    """pymatgen's reduced formula ("Au3Ni" -> "NiAu3", its electronegativity order)."""
    from pymatgen.core import Composition

    return Composition(formula).reduced_formula


def _reduced(record: CrystalRecord) -> str:
    from pymatgen.core import Composition

    return Composition(dict(Counter(element_symbol(int(z)) for z in record.atomic_numbers))).reduced_formula
