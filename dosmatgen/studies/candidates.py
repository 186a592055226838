"""Generated crystals as study candidates: validity (:mod:`dosmatgen.data.validity`), formula, first
element, and their MLFF formation energies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dosmatgen.data.schema import MAX_Z, CrystalRecord, element_symbol
from dosmatgen.errors import DataError
from dosmatgen.generate.generated import RawCrystal


@dataclass(eq=False)
class StudyCandidate:
    """One generated crystal and what the study measured on it.

    ``record`` is None when the arrays could not be built into a crystal at all;
    ``invalid_reason`` is set (and the candidate excluded from DOS scores) when the crystal is
    not valid in the sense of :func:`dosmatgen.data.validity.validity_reason`.
    """

    candidate_id: str
    group: str
    record: CrystalRecord | None
    invalid_reason: str | None = None
    formula: str | None = None
    first_element: str | None = None
    dos_mae: float | None = None
    dos_mae_std: float | None = None
    cosine: float | None = None
    pred_dos: np.ndarray | None = None  # (400,) raw surrogate DOS of the first atom
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.record is not None and self.invalid_reason is None

    @property
    def num_atoms(self) -> int | None:
        return None if self.record is None else self.record.num_atoms

    def row(self) -> dict[str, Any]:
        """Flat per-candidate row (CSV / JSON)."""
        out = {"candidate_id": self.candidate_id, "group": self.group, "num_atoms": self.num_atoms,
               "valid": self.valid, "invalid_reason": self.invalid_reason, "formula": self.formula,
               "first_element": self.first_element, "dos_mae": rounded(self.dos_mae),
               "dos_mae_std": rounded(self.dos_mae_std), "cosine": rounded(self.cosine)}
        out.update({k: rounded(v) if isinstance(v, float) else v for k, v in self.extra.items()
                    if not k.startswith("_")})
        return out

    def structure_json(self) -> dict[str, Any] | None:
        return None if self.record is None else structure_json(self.record)


def structure_json(rec: CrystalRecord) -> dict[str, Any]:
    """A crystal as the results files store it (coordinates and lattice rounded to 1e-6)."""
    return {"atomic_numbers": rec.atomic_numbers.tolist(), "frac_coords": np.round(rec.frac_coords, 6).tolist(),
            "lattice": np.round(rec.lattice, 6).tolist()}


def finite_mean(values: Iterable[float | None]) -> float | None:
    """Mean of the finite values (None when there are none)."""
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def finite_median(values: Iterable[float | None]) -> float | None:
    """Median of the finite values (None when there are none): robust to MLFF outliers."""
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def rounded(v: Any, nd: int = 5) -> Any:
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), nd)
    return v


def make_candidates(raw: Sequence[RawCrystal], group: str, prefix: str) -> list[StudyCandidate]:
    """Candidates from sampled arrays; validity as in :mod:`dosmatgen.evaluate.metrics`."""
    from dosmatgen.data.validity import validity_reason

    out = []
    for i, (z, x, lat) in enumerate(raw):
        cid = f"{prefix}-{i:04d}"
        s, why = validity_reason(z, x, lat)
        rec = None
        if s is not None:
            try:
                rec = CrystalRecord(cid, np.asarray(z), np.mod(np.asarray(x), 1.0), np.asarray(lat),
                                    provenance={"source": "dosmatgen-generated", "group": group})
            except DataError as exc:
                why = why or f"record:{exc}"
        c = StudyCandidate(cid, group, rec, why)
        if rec is not None:
            c.formula = rec.formula
            c.first_element = element_symbol(int(rec.atomic_numbers[0]))
        out.append(c)
    return out


def elements_with_references() -> frozenset[str]:
    """Elements for which :mod:`dosmatgen.evaluate.formation` can build an elemental reference
    (ASE's dcdft set or pymatgen's MP elemental energies)."""
    global _REF_ELEMENTS
    if _REF_ELEMENTS is None:
        from ase.collections import dcdft

        from dosmatgen.evaluate.formation import mp_elemental_energies

        _REF_ELEMENTS = frozenset(dcdft.names) | frozenset(mp_elemental_energies())
    return _REF_ELEMENTS


_REF_ELEMENTS: frozenset[str] | None = None


def formation_energies(candidates: Sequence[StudyCandidate], raws: Sequence[RawCrystal], out_json: Path, cfg: Any,
                       calc: Any, input_name: str) -> dict[str, Any]:
    """MLFF formation energies (:func:`dosmatgen.evaluate.formation.compute_formation_energies`,
    with the study config's ``mlff``, ``mlff_workers``, ``mlff_device``, ``relaxer``, ``fmax``,
    ``relax_steps``, ``refs_cache``; ``calc`` replaces the MLFF and runs in this process) of the
    valid candidates whose elements all have an elemental reference and are known to the
    MLFF (SevenNet's ``type_map``; other calculators are not checked); fills
    ``extra['ef_unrelaxed'|'ef_relaxed'|'relax_status'|'relax_converged']`` (``relax_status`` is
    ``invalid`` or ``unsupported_element:<els>`` for the ones not computed). Returns the formation output."""
    from dosmatgen.evaluate.formation import FormationItem, compute_formation_energies

    from dosmatgen.evaluate.mlff import get_calculator

    known = set(elements_with_references())
    calc_for_check = get_calculator(cfg.mlff, device=cfg.mlff_device) if calc is None else calc
    if calc is None and cfg.mlff_workers <= 1:
        calc = calc_for_check
    type_map = getattr(calc_for_check, "type_map", None)  # SevenNet: the elements the model knows
    if isinstance(type_map, dict) and type_map:
        known &= {element_symbol(int(z)) for z in type_map if 1 <= int(z) <= MAX_Z}
    items = []
    for c, (z, x, lat) in zip(candidates, raws):
        c.extra.update({"ef_unrelaxed": None, "ef_relaxed": None, "relax_converged": None})
        if not c.valid:
            c.extra["relax_status"] = "invalid"
            continue
        missing = sorted({element_symbol(int(v)) for v in z} - known)
        if missing:
            c.extra["relax_status"] = "unsupported_element:" + ",".join(missing)
            continue
        items.append(FormationItem(c.candidate_id, c.group, z, x, lat))
    if not items:
        return {"rows": [], "status_counts": {}, "references": {}}
    form = compute_formation_energies(items, out_json, mlff=cfg.mlff, fmax=cfg.fmax, steps=cfg.relax_steps,
                                      workers=1 if calc is not None else cfg.mlff_workers, refs_cache=cfg.refs_cache,
                                      device=cfg.mlff_device, calc=calc, input_name=input_name,
                                      progress=cfg.progress, relaxer=cfg.relaxer)
    by_id = {r["id"]: r for r in form["rows"]}
    for c in candidates:
        r = by_id.get(c.candidate_id)
        if r is not None:
            c.extra.update({"ef_unrelaxed": r.get("ef_unrelaxed"), "ef_relaxed": r.get("ef_relaxed"),
                            "relax_status": r.get("status"), "relax_converged": r.get("converged")})
    return form
