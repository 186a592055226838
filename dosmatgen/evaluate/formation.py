"""Formation energies per atom with a machine-learned force field (paper §3.1 Fig. 2, B.1, Fig. 7).

For a crystal with energy E (eV) and n_el atoms of each element,

    E_f = (E - sum_el n_el * mu_el) / N            (eV/atom)

where mu_el is the energy per atom of the element's reference crystal computed with the *same*
MLFF: the structure of ``ase.collections.dcdft`` (the Delta-test set of elemental crystals)
relaxed with FIRE + FrechetCellFilter. An element missing from dcdft (lanthanides, actinides ...)
or whose reference relaxation fails falls back to the Materials Project GGA energy per atom of
the element that pymatgen ships (``pymatgen/analysis/compatibility/calc_compounds.json.gz``); the
fallback is recorded in the references and in every row that uses it.

Every structure gets both an unrelaxed E_f (single point on the given geometry) and a relaxed E_f
(FIRE + FrechetCellFilter, :data:`~dosmatgen.evaluate.mlff.DEFAULT_FMAX` and ``DEFAULT_RELAX_STEPS``):
one at a time with ASE (``relaxer="ase"``, :func:`dosmatgen.evaluate.mlff.relax`, the reference) or
many at once with torch-sim (``relaxer="batched"``, :mod:`dosmatgen.evaluate.batched_relax`). The
elemental references are cached per MLFF and relaxation setting (:class:`ElementalReferences`;
default ``~/.cache/dosmatgen/elemental_refs_<mlff>.json``, or ``--refs-cache``).

Output of :func:`compute_formation_energies` (``--out FILE.json``; a CSV with the same rows is
written beside it as ``FILE.csv``)::

    {"format": "dosmatgen-formation", "version": 1, "mlff": "sevenn", "relaxer": "ase", "fmax": 0.05, "max_steps": 200,
     "input": "<path>", "n": .., "status_counts": {"ok": .., "skipped_invalid:overlapping_atoms": ..},
     "references": {"Au": {"energy_per_atom": -3.27, "source": "mlff:dcdft", "natoms": 4, "converged": true},
                    "La": {"energy_per_atom": .., "source": "mp-gga:mp-26", ...}, <the other elements used>},
     "rows": [{<the ROW_COLUMNS>}]}

Energies ``e_*`` are total eV; ``ef_*`` are eV/atom; ``volume_ratio`` is the relaxed over the given
volume, ``volume_per_atom`` the given one (Å^3); missing values are ``null``. ``status`` is
``ok``, ``relax_failed`` (unrelaxed E_f kept), ``skipped_invalid:<reason>`` (NaN or degenerate
lattice, overlapping atoms, or less than ``min_volume_per_atom`` Å^3 per atom, which would flood
the MLFF's neighbour list) or ``error:<ExceptionType>``. ``relax_status`` says how the relaxation
ended: ``converged``, ``not_converged`` / ``max_steps`` (out of steps), ``failed`` (ASE blow-up) or
``dropped:<reason>`` (batched: ``non_finite``, ``volume_blowup``, ``below_energy_floor``,
``error:<Exception>``). Work is cut into chunks written atomically under ``FILE.json.parts/``; a
rerun skips finished chunks (resumable).
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import multiprocessing as mp
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from dosmatgen.errors import ConfigError, DataError
from dosmatgen.evaluate.mlff import (DEFAULT_FMAX, DEFAULT_RELAX_STEPS, canonical_mlff, get_calculator, limit_threads,
                                     relax)
from dosmatgen.io import atomic_save_json, output_lock, atomic_write
from dosmatgen.progress import bar as progress_bar

FORMAT = "dosmatgen-formation"
#: A relaxed formation energy below this (eV/atom) is taken for the MLFF extrapolating on a
#: collapsed cell, not a stable crystal: the most negative known formation energies are about
#: -4.5 eV/atom (fluorides, oxides). Used by the formation table, the screen and the window sweep.
MIN_PLAUSIBLE_EF = -5.0
REFS_FORMAT = "dosmatgen-elemental-refs"
#: How structures are relaxed: ``ase`` one at a time (the reference), ``batched`` many at once.
RELAXERS = ("ase", "batched")
#: Structures denser than this (Å^3 per atom) are not given to the MLFF.
DEFAULT_MIN_VOLUME_PER_ATOM: float = 1.0
#: The columns of an output row (JSON and CSV), in order.
ROW_COLUMNS = ("id", "source_id", "formula", "natoms", "status", "e_unrelaxed", "e_relaxed", "ef_unrelaxed",
               "ef_relaxed", "converged", "relax_status", "volume_ratio", "volume_per_atom", "ref_fallback")


def default_refs_cache(mlff: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "dosmatgen" / f"elemental_refs_{mlff}.json"


@functools.lru_cache(maxsize=1)
def mp_elemental_energies() -> dict[str, tuple[float, str]]:
    """Element -> (MP GGA energy per atom in eV, MP id) from the data file pymatgen ships."""
    import importlib.util

    spec = importlib.util.find_spec("pymatgen.analysis.compatibility")  # locate without importing it (slow)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("pymatgen.analysis.compatibility (MP elemental energies) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "calc_compounds.json.gz"
    if not path.exists():
        raise ConfigError(f"pymatgen's MP elemental energies ({path}) are missing")
    with gzip.open(path, "rt") as f:
        entries = json.load(f)
    out: dict[str, tuple[float, str]] = {}
    for entry in entries.values():
        comp_ = entry.get("composition", {})
        if len(comp_) == 1:
            (el, n), = comp_.items()
            e = float(entry["energy"]) / float(n)
            if el not in out or e < out[el][0]:
                out[el] = (e, str(entry.get("entry_id")))
    return out


class ElementalReferences:
    """Energies per atom of elemental reference crystals for one MLFF, cached in a JSON file.

    ``refs.get(["Au", "Ni"], calc)`` relaxes any element not yet cached (dcdft structure, same
    MLFF) and returns ``{el: entry}``; entries carry ``energy_per_atom`` and ``source``. The file
    keeps one set of entries per relaxation setting (``fmax``, ``steps``): a run with other
    settings never reuses another's references (an unconverged ``--steps 0`` set stays apart).
    Saving merges with what other runs wrote meanwhile, under the file's lock."""

    def __init__(self, mlff: str, cache: str | Path | None = None, fmax: float = DEFAULT_FMAX,
                 steps: int = DEFAULT_RELAX_STEPS) -> None:
        self.mlff, self.fmax, self.steps = mlff, fmax, steps
        self.key = f"fmax={float(fmax):g},steps={int(steps)}"
        self.path = Path(cache) if cache is not None else default_refs_cache(mlff)
        self.elements: dict[str, dict[str, Any]] = dict(self._read().get(self.key, {}).get("elements", {}))

    def _read(self) -> dict[str, dict[str, Any]]:
        """The file's sets of entries by setting ({} when there is no file yet)."""
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"elemental reference cache {self.path} is unreadable: {exc}") from exc
        if data.get("format") != REFS_FORMAT or data.get("mlff") != self.mlff:
            raise DataError(f"{self.path} is not an elemental reference cache for MLFF {self.mlff!r}")
        if data.get("version") == 1:  # one set, keyed by the settings it recorded
            key = f"fmax={float(data.get('fmax', DEFAULT_FMAX)):g},steps={int(data.get('max_steps', DEFAULT_RELAX_STEPS))}"
            return {key: {"elements": data.get("elements", {})}}
        return dict(data.get("sets", {}))

    def save(self) -> None:
        with output_lock(self.path, "elemental reference cache", wait=30.0):
            sets = self._read()
            mine = sets.setdefault(self.key, {"fmax": self.fmax, "max_steps": self.steps, "elements": {}})
            mine["elements"] = {**mine.get("elements", {}), **self.elements}
            atomic_save_json(self.path, {"format": REFS_FORMAT, "version": 2, "mlff": self.mlff, "sets": sets})

    def get(self, elements: Iterable[str], calc: Any = None, progress: bool = False) -> dict[str, dict[str, Any]]:
        """References for ``elements``, computing (with ``calc``) and caching missing ones.

        An element with neither an MLFF reference (not in dcdft, or the MLFF cannot handle it)
        nor an MP elemental energy is left out of the result, never fatal: structures containing
        it are reported as ``skipped_no_reference:<El>`` by :func:`evaluate_item`.
        """
        wanted = sorted(set(elements))
        missing = [el for el in wanted if el not in self.elements]
        if missing:
            from ase.collections import dcdft

            for el in progress_bar(progress, missing, desc=f"elemental refs ({self.mlff})", unit="elements"):
                entry = None
                if el in dcdft.names:
                    if calc is None:
                        raise ConfigError(f"elemental reference for {el} is not cached; pass an MLFF calculator")
                    atoms = dcdft[el]
                    try:
                        _, energy, converged = relax(atoms, calc, self.fmax, self.steps)
                    except (ValueError, RuntimeError, KeyError, IndexError):  # element unknown to the MLFF
                        energy, converged = float("nan"), False
                    if np.isfinite(energy):
                        entry = {"energy_per_atom": energy / len(atoms), "source": "mlff:dcdft",
                                 "natoms": len(atoms), "converged": bool(converged)}
                if entry is None:
                    if el not in mp_elemental_energies():  # cached: read once per process
                        continue
                    e, mpid = mp_elemental_energies()[el]
                    entry = {"energy_per_atom": e, "source": f"mp-gga:{mpid}", "natoms": None, "converged": None}
                self.elements[el] = entry
                self.save()  # after each element: a long reference run is resumable too
        return {el: self.elements[el] for el in wanted if el in self.elements}


def formation_energy_per_atom(symbols: Sequence[str], energy: float, refs: dict[str, dict[str, Any]]) -> float:
    """``(E - sum_i mu_{el(i)}) / N`` in eV/atom for a crystal of ``symbols`` with total energy
    ``energy`` (eV); ``refs[el]["energy_per_atom"]`` is mu_el."""
    if len(symbols) == 0:
        raise DataError("formation energy of a structure with zero atoms")
    mu = sum(float(refs[s]["energy_per_atom"]) for s in symbols)
    return (float(energy) - mu) / len(symbols)


@dataclass
class FormationItem:
    """One structure to evaluate: raw arrays (possibly invalid) and its ids."""

    id: str
    source_id: str
    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lattice: np.ndarray


_WORKER: dict[str, Any] = {}


def _init_worker(mlff: str, device: str, threads: int) -> None:
    limit_threads(threads)
    _WORKER["calc"] = get_calculator(mlff, device=device)


def _prepare_item(item: FormationItem, refs: dict[str, dict[str, Any]],
                  min_volume_per_atom: float) -> tuple[dict[str, Any], Any, list[str]]:
    """The row of one structure, and its ASE Atoms and symbols when it is to be relaxed
    (``None`` when it was skipped: invalid, too dense or an element without a reference)."""
    from ase import Atoms

    from dosmatgen.data.validity import validity_reason

    row: dict[str, Any] = {**dict.fromkeys(ROW_COLUMNS), "id": item.id, "source_id": item.source_id,
                           "natoms": int(len(item.atomic_numbers)), "status": "ok", "ref_fallback": []}
    s, why = validity_reason(item.atomic_numbers, item.frac_coords, item.lattice)
    if s is not None:
        row["formula"] = s.composition.reduced_formula
        row["volume_per_atom"] = float(s.volume / len(s))
    if why is None and s.volume / len(s) < min_volume_per_atom:
        why = "too_dense"
    if why is not None:
        row["status"] = f"skipped_invalid:{why}"
        return row, None, []
    symbols = [site.specie.symbol for site in s]
    no_ref = sorted({el for el in symbols if el not in refs})
    if no_ref:
        row["status"] = f"skipped_no_reference:{','.join(no_ref)}"
        return row, None, []
    row["ref_fallback"] = sorted({el for el in symbols if not str(refs[el]["source"]).startswith("mlff")})
    atoms = Atoms(numbers=[int(z) for z in item.atomic_numbers], scaled_positions=s.frac_coords,
                  cell=s.lattice.matrix, pbc=True)
    return row, atoms, symbols


def _fill_energies(row: dict[str, Any], symbols: Sequence[str], refs: dict[str, dict[str, Any]], e0: float,
                   e1: float, volume_ratio: float | None, converged: bool, relax_status: str) -> dict[str, Any]:
    """Write the unrelaxed (``e0``) and relaxed (``e1``) energies and E_f into ``row``."""
    for state, e in (("unrelaxed", e0), ("relaxed", e1)):
        if np.isfinite(e):
            row[f"e_{state}"], row[f"ef_{state}"] = float(e), formation_energy_per_atom(symbols, e, refs)
    row["converged"], row["relax_status"] = bool(converged), relax_status
    row["volume_ratio"] = None if volume_ratio is None or not np.isfinite(volume_ratio) else float(volume_ratio)
    if not np.isfinite(e1):
        row["status"] = "relax_failed"
    return row


def evaluate_item(item: FormationItem, calc: Any, refs: dict[str, dict[str, Any]], fmax: float, steps: int,
                  min_volume_per_atom: float = DEFAULT_MIN_VOLUME_PER_ATOM) -> dict[str, Any]:
    """Unrelaxed and relaxed E_f of one structure with the ASE relaxation
    (:func:`dosmatgen.evaluate.mlff.relax`); never raises (errors go into ``status``)."""
    row, atoms, symbols = _prepare_item(item, refs, min_volume_per_atom)
    if atoms is None:
        return row
    try:
        atoms.calc = calc
        e0 = float(atoms.get_potential_energy())
        relaxed, e1, converged = relax(atoms, calc, fmax, steps)
        status = "converged" if converged else ("failed" if not np.isfinite(e1) else "not_converged")
        _fill_energies(row, symbols, refs, e0, e1, relaxed.get_volume() / atoms.get_volume(), converged, status)
    except Exception as exc:  # the MLFF can fail on absurd geometries; record, do not crash
        row["status"] = f"error:{type(exc).__name__}"
    return row


def evaluate_batch(items: Sequence[FormationItem], relaxer: Any, refs: dict[str, dict[str, Any]],
                   min_volume_per_atom: float = DEFAULT_MIN_VOLUME_PER_ATOM,
                   on_row: Any = None) -> list[dict[str, Any]]:
    """Rows of ``items`` relaxed together by a :class:`~dosmatgen.evaluate.batched_relax.BatchedRelaxer`.

    The unrelaxed energy is the batch's first force evaluation; a crystal whose relaxed E_f would
    fall below :data:`MIN_PLAUSIBLE_EF` is dropped from the batch as soon as it gets there
    (``relax_status`` ``dropped:below_energy_floor``, ``status`` ``relax_failed``)."""
    prepared = [_prepare_item(it, refs, min_volume_per_atom) for it in items]
    todo = [k for k, (_, atoms, _) in enumerate(prepared) if atoms is not None]
    for k, (row, atoms, _) in enumerate(prepared):
        if atoms is None and on_row is not None:
            on_row(row)
    floors = [sum(float(refs[el]["energy_per_atom"]) for el in prepared[k][2]) + MIN_PLAUSIBLE_EF * len(prepared[k][2])
              for k in todo]

    def done(j: int, outcome: Any) -> None:
        row, atoms, symbols = prepared[todo[j]]
        ratio = outcome.atoms.get_volume() / atoms.get_volume() if outcome.atoms is not None else None
        _fill_energies(row, symbols, refs, outcome.initial_energy, outcome.energy, ratio, outcome.converged,
                       outcome.status)
        if on_row is not None:
            on_row(row)

    if todo:
        relaxer.relax([prepared[k][1] for k in todo], energy_floor=floors, on_done=done)
    return [row for row, _, _ in prepared]


def _worker_task(args):
    item, refs, fmax, steps, min_vol = args
    return evaluate_item(item, _WORKER["calc"], refs, fmax, steps, min_vol)


def compute_formation_energies(items: Sequence[FormationItem], out: str | Path, *, mlff: str = "sevenn",
                               workers: int = 1, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS,
                               refs_cache: str | Path | None = None, chunk_size: int | None = None,
                               min_volume_per_atom: float = DEFAULT_MIN_VOLUME_PER_ATOM, device: str = "cpu",
                               calc: Any = None, input_name: str | None = None, progress: bool = True,
                               relaxer: str = "ase", max_atoms: int | None = None,
                               batched: Any = None) -> dict[str, Any]:
    """Relax every item with the MLFF and write ``out`` (JSON) + ``out`` with suffix .csv.

    Args:
        out: output JSON path; chunks go to ``<out>.parts/`` and are reused on rerun.
        mlff: an MLFF of :func:`dosmatgen.evaluate.mlff.get_calculator` (``sevenn``/``7net-0``, ``chgnet``,
            ``orb``/``orb-v2``, ``emt``); the reference cache and the output record the registry name.
        workers: ``relaxer="ase"``: processes (``spawn``), each with one torch thread and its own
            calculator, ``1`` runs in this process; ``relaxer="batched"``: torch threads.
        chunk_size: structures per resumable chunk (default 64 for ``ase``, 512 for ``batched``).
        calc: an already built calculator for ``workers == 1`` (tests).
        relaxer: one of :data:`RELAXERS` (see the module docstring).
        max_atoms: atoms per batch for ``batched`` (``None``: sized from memory).
        batched: an already built ``BatchedRelaxer`` (tests).
    Returns the output dict (also written).
    """
    mlff = canonical_mlff(mlff)
    if relaxer not in RELAXERS:
        raise ConfigError(f"unknown relaxer {relaxer!r}; choose one of {RELAXERS}")
    if len(items) == 0:
        raise DataError("no structures to compute formation energies for")
    chunk_size = int(chunk_size) if chunk_size is not None else (512 if relaxer == "batched" else 64)
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if relaxer == "batched" and batched is None:
        from dosmatgen.evaluate.batched_relax import BatchedRelaxer

        limit_threads(max(1, workers))
        batched = BatchedRelaxer(mlff, device, fmax, steps, max_atoms)  # fails here, before any work
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    if relaxer == "ase" and workers <= 1 and calc is None:
        limit_threads(1)
        calc = get_calculator(mlff, device=device)
    refs = _references(items, ElementalReferences(mlff, refs_cache, fmax, steps), calc, device, progress)
    chunks = [list(items[i:i + chunk_size]) for i in range(0, len(items), chunk_size)]
    todo = [k for k in range(len(chunks)) if not (parts / f"part_{k:05d}.json").exists()]
    bar = progress_bar(progress, total=len(items), desc=f"formation ({mlff})", unit="crystals",
               initial=len(items) - sum(len(chunks[k]) for k in todo))
    pool = worker_pool(mlff, device, workers) if relaxer == "ase" and workers > 1 and todo else None
    try:
        for k in todo:
            rows = _evaluate_chunk(chunks[k], lambda: bar.update(1), refs, fmax, steps, min_volume_per_atom,
                                   batched=batched if relaxer == "batched" else None, pool=pool, calc=calc)
            atomic_save_json(parts / f"part_{k:05d}.json", {"chunk": k, "rows": rows})
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    rows = [r for k in range(len(chunks)) for r in json.loads((parts / f"part_{k:05d}.json").read_text())["rows"]]
    result = {"format": FORMAT, "version": 1, "mlff": mlff, "relaxer": relaxer, "fmax": fmax, "max_steps": steps,
              "min_volume_per_atom": min_volume_per_atom, "input": input_name, "n": len(rows),
              "status_counts": dict(Counter(r["status"] for r in rows)), "references": refs, "rows": rows}
    atomic_save_json(out, result)
    write_rows_csv(out.with_suffix(".csv"), rows)
    return result


def _references(items: Sequence[FormationItem], store: ElementalReferences, calc: Any, device: str,
                progress: bool) -> dict[str, dict[str, Any]]:
    """The elemental references of every element in ``items`` from ``store``; missing ones are
    computed with ``calc``, or a calculator made here when ``calc`` is ``None``."""
    from pymatgen.core.periodic_table import Element

    from dosmatgen.data.schema import MAX_Z

    elements = {Element.from_Z(int(z)).symbol for it in items for z in np.asarray(it.atomic_numbers).reshape(-1)
                if 1 <= int(z) <= MAX_Z}
    if calc is None and any(el not in store.elements for el in elements):
        calc = get_calculator(store.mlff, device=device)
    return store.get(elements, calc, progress=progress)


def worker_pool(mlff: str, device: str, workers: int) -> Any:
    """``workers`` spawned processes, each with one torch thread and its own ``mlff`` calculator."""
    from dosmatgen.threads import single_threaded_children

    with single_threaded_children():
        return mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(mlff, device, 1))


def _evaluate_chunk(chunk: Sequence[FormationItem], tick: Callable[[], Any], refs: dict[str, dict[str, Any]],
                    fmax: float, steps: int, min_volume_per_atom: float, *, batched: Any = None, pool: Any = None,
                    calc: Any = None) -> list[dict[str, Any]]:
    """The rows of one chunk, relaxed together by ``batched``, or one at a time by the worker
    ``pool`` or with ``calc`` in this process; ``tick`` is called after each row."""
    if batched is not None:
        return evaluate_batch(chunk, batched, refs, min_volume_per_atom, on_row=lambda _: tick())
    if pool is not None:
        rows = pool.imap(_worker_task, [(it, refs, fmax, steps, min_volume_per_atom) for it in chunk])
    else:
        rows = (evaluate_item(it, calc, refs, fmax, steps, min_volume_per_atom) for it in chunk)
    out = []
    for row in rows:
        out.append(row)
        tick()
    return out


def write_rows_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_write(path, "w") as f:
        w = csv.writer(f)
        w.writerow(ROW_COLUMNS)
        for r in rows:
            w.writerow(["" if r.get(c) is None else (";".join(r[c]) if c == "ref_fallback" else r[c]) for c in ROW_COLUMNS])


def load_formation(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`compute_formation_energies`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read formation-energy file {path}: {exc}") from exc
    if data.get("format") != FORMAT:
        raise DataError(f"{path} is not a dosmatgen formation-energy file")
    return data
