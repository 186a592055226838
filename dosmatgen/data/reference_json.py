"""The public reference code's data format (docs/data.md): a JSON list of
``{structure_id, positions (Cartesian Å), cell (3x3 rows, Å), atomic_numbers, y (N x 400)}``.

Import turns every entry into a :class:`CrystalRecord` within the bounds of
:mod:`~dosmatgen.data.plausibility` (errors name the entry's position and id); export writes the
list atomically.

>>> import numpy as np, tempfile, os
>>> r = CrystalRecord("x", [8, 8], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 3, np.ones((2, 400)))
>>> p = os.path.join(tempfile.mkdtemp(), "refs.json")
>>> _ = write_reference_json(p, [r]); [q.structure_id for q in read_reference_json(p)]
['x']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from dosmatgen.data.plausibility import check_record
from dosmatgen.data.schema import CrystalRecord, check_dos_sign
from dosmatgen.errors import DataError
from dosmatgen.io import atomic_write


def records_from_reference_list(entries: Any, source: str = "reference JSON") -> list[CrystalRecord]:
    """Convert a parsed JSON list into records; :class:`DataError` naming the bad entry."""
    if not isinstance(entries, list):
        raise DataError(f"{source}: expected a JSON list of structures, got a {type(entries).__name__}")
    if not entries:
        raise DataError(f"{source}: the list of structures is empty")
    out: list[CrystalRecord] = []
    seen: set[str] = set()
    for i, obj in enumerate(entries):
        if not isinstance(obj, dict):
            raise DataError(f"{source}: entry {i} is a {type(obj).__name__}, expected an object with keys "
                            "structure_id, positions, cell, atomic_numbers, y")
        label = f"entry {i} ({obj.get('structure_id', '?')})"
        try:
            rec = CrystalRecord.from_reference_json(obj)
            check_record(rec)  # the bounds first: overlap and sign mean nothing in a 1e7 Å cell
            rec.validate(check_distances=True)
            if rec.dos is not None:
                check_dos_sign(rec.dos, rec.structure_id)
        except DataError as exc:
            raise DataError(f"{source}: {label}: {exc}") from exc
        except (ValueError, TypeError) as exc:  # ragged lists, strings where numbers belong
            raise DataError(f"{source}: {label}: malformed numbers ({exc})") from exc
        if rec.structure_id in seen:
            raise DataError(f"{source}: structure_id {rec.structure_id!r} appears more than once")
        seen.add(rec.structure_id)
        out.append(rec)
    return out


def read_reference_json(path: str | Path) -> list[CrystalRecord]:
    """Read a reference-format JSON file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"reference JSON file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    return records_from_reference_list(entries, source=str(path))


def write_reference_json(path: str | Path, records: Iterable[CrystalRecord]) -> int:
    """Write records as a reference-format JSON list (atomically); returns how many."""
    entries = [r.to_reference_json() for r in records]
    if not entries:
        raise DataError("refusing to write an empty reference JSON list")
    with atomic_write(path, "w") as f:
        json.dump(entries, f)
        f.write("\n")
    return len(entries)
