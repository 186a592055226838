"""Writing generated crystals: CIF files and one extxyz file (pymatgen / ASE conventions).

Every writer goes through a temporary file and a rename; a folder of results is written into a
staging folder that replaces the output in one rename (:func:`dosmatgen.io.staged_folder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from dosmatgen.errors import ConfigError, DataError
from dosmatgen.generate.generated import GeneratedSet
from dosmatgen.io import atomic_temp_path

#: Structure file formats the writers know.
STRUCTURE_FORMATS: tuple[str, ...] = ("cif", "extxyz")


def safe_name(name: str) -> str:
    """``name`` with every character but letters, digits and ``-_.`` replaced by ``_``.

    >>> safe_name("N=4 group/1")
    'N_4_group_1'
    """
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def write_structures(structures: Sequence, out_dir: str | Path, fmt: Iterable[str] = STRUCTURE_FORMATS,
                     names: Sequence[str] | None = None) -> dict[str, list[Path]]:
    """Write pymatgen structures atomically: one ``<name>.cif`` each and/or one
    ``structures.extxyz`` with all of them (``info['structure_id']`` = name). ``None`` entries
    (invalid crystals) are skipped. Returns the written paths per format."""
    fmts = tuple(fmt)
    unknown = sorted(set(fmts) - set(STRUCTURE_FORMATS))
    if unknown:
        raise ConfigError(f"unknown structure format(s) {unknown}; known: {', '.join(STRUCTURE_FORMATS)}")
    names = list(names) if names is not None else [f"{i:06d}" for i in range(len(structures))]
    if len(names) != len(structures):
        raise DataError(f"{len(names)} names for {len(structures)} structures")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {f: [] for f in fmts}
    if "cif" in fmts:
        from pymatgen.io.cif import CifWriter

        for name, s in zip(names, structures):
            if s is None:
                continue
            path = out_dir / f"{name}.cif"
            with atomic_temp_path(path) as tmp:
                CifWriter(s).write_file(str(tmp))
            written["cif"].append(path)
    if "extxyz" in fmts:
        from ase import Atoms
        from ase.io import write as ase_write

        frames = []
        for name, s in zip(names, structures):
            if s is None:
                continue
            atoms = Atoms(numbers=[site.specie.Z for site in s], scaled_positions=s.frac_coords,
                          cell=s.lattice.matrix, pbc=True)
            atoms.info["structure_id"] = str(name)
            frames.append(atoms)
        path = out_dir / "structures.extxyz"
        with atomic_temp_path(path) as tmp:
            ase_write(str(tmp), frames, format="extxyz")
        written["extxyz"].append(path)
    return written


def write_cifs(gen: GeneratedSet, out_dir: str | Path) -> int:
    """One CIF per buildable generated crystal, named ``<index>_<source id>.cif``; returns how many."""
    structs = [s for s, _ in gen.structures()]
    names = [f"{i:06d}_{safe_name(sid)}" for i, sid in enumerate(gen.source_ids)]
    return len(write_structures(structs, out_dir, fmt=("cif",), names=names)["cif"])
