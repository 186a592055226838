"""Compact on-disk store of many :class:`CrystalRecord` (DESIGN §3.1).

One ``.npz`` file: ragged per-atom arrays concatenated with an ``offsets`` index, DOS in float16
(states/eV/site; float16 keeps 3 significant digits, well inside DFT accuracy), provenance as JSON.
Writes are atomic (temp file + rename), so an interrupted write never leaves a half store.

>>> import numpy as np, tempfile, os
>>> r = CrystalRecord("x", [8, 8], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 3, np.ones((2, 400)))
>>> p = os.path.join(tempfile.mkdtemp(), "s.npz")
>>> save_records(p, [r]); load_records(p)[0].structure_id
'x'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import DataError
from dosmatgen.io import atomic_temp_path

STORE_VERSION = 1


def save_records(path: str | Path, records: Sequence[CrystalRecord], meta: dict[str, Any] | None = None) -> None:
    """Write records to ``path`` (.npz). Records without DOS are stored with a NaN-free zero DOS
    and ``has_dos = False``."""
    if len(records) == 0:
        raise DataError("refusing to write an empty store")
    counts = np.array([r.num_atoms for r in records], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    dos = np.concatenate([r.dos if r.dos is not None else np.zeros((r.num_atoms, N_DOS)) for r in records])
    arrays = {
        "version": np.array(STORE_VERSION),
        "structure_ids": np.array([r.structure_id for r in records]),
        "offsets": offsets,
        "atomic_numbers": np.concatenate([r.atomic_numbers for r in records]).astype(np.int16),
        "frac_coords": np.concatenate([r.frac_coords for r in records]).astype(np.float64),
        "lattices": np.stack([r.lattice for r in records]).astype(np.float64),
        "dos": dos.astype(np.float16),
        "has_dos": np.array([r.dos is not None for r in records]),
        "provenance": np.array([json.dumps(r.provenance, sort_keys=True, default=str) for r in records]),
        "meta": np.array(json.dumps(meta or {}, sort_keys=True, default=str)),
    }
    with atomic_temp_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_records(path: str | Path) -> list[CrystalRecord]:
    """Read every record of a store written by :func:`save_records`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset store {path} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        offsets = z["offsets"]
        ids, zs, xs, lats = z["structure_ids"], z["atomic_numbers"], z["frac_coords"], z["lattices"]
        dos, has_dos, prov = z["dos"], z["has_dos"], z["provenance"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a dosmatgen store: {exc}") from exc
    out = []
    for i, sid in enumerate(ids):
        a, b = offsets[i], offsets[i + 1]
        out.append(CrystalRecord(str(sid), zs[a:b], xs[a:b], lats[i],
                                 dos[a:b].astype(np.float32) if has_dos[i] else None,
                                 json.loads(str(prov[i]))))
    return out


def load_meta(path: str | Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))
