"""The output gate (``dosmatgen figures check``): every table and figure file of a run exists,
parses for its type and holds no NaN / inf."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Cells that mean "not a number" in a table.
_BAD_CELLS = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "-infinity"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def check_file(path: str | os.PathLike) -> list[str]:
    """Problems of one output file (empty list = fine): exists, non-empty, parses for its type,
    no NaN / inf in tables (CSV cells, Markdown cells) or JSON numbers.

    Types: .csv (a header and at least one row of equal width), .md, .json, .png (valid image),
    .pdf (``%PDF`` header, ``%%EOF`` trailer); other files: non-empty.
    """
    path = Path(path)
    if not path.exists():
        return [f"{path}: missing"]
    if path.stat().st_size == 0:
        return [f"{path}: empty"]
    suffix = path.suffix.lower()
    problems: list[str] = []
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                header, *rows = list(csv.reader(f))
            if not rows:
                problems.append(f"{path}: header only, no rows")
            for i, row in enumerate(rows, start=2):
                if len(row) != len(header):
                    problems.append(f"{path}:{i}: {len(row)} cells, header has {len(header)}")
                bad = [header[j] if j < len(header) else str(j) for j, c in enumerate(row)
                       if c.strip().lower() in _BAD_CELLS]
                if bad:
                    problems.append(f"{path}:{i}: NaN/inf in column(s) {', '.join(bad)}")
        elif suffix == ".md":
            for i, line in enumerate(path.read_text().splitlines(), start=1):
                if line.lstrip().startswith("|"):
                    cells = [c.strip().lower() for c in line.strip().strip("|").split("|")]
                    if any(c in _BAD_CELLS for c in cells):
                        problems.append(f"{path}:{i}: NaN/inf in a table row")
        elif suffix == ".json":
            with open(path) as f:
                json.load(f, parse_constant=_reject_constant)
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                im.verify()
        elif suffix == ".pdf":
            data = path.read_bytes()
            if not data.startswith(b"%PDF") or b"%%EOF" not in data[-1024:]:
                problems.append(f"{path}: not a complete PDF")
    except (ValueError, OSError, csv.Error, SyntaxError) as exc:  # UnicodeDecodeError is a ValueError
        problems.append(f"{path}: unreadable {suffix or 'file'}: {exc}")
    return problems


def check_outputs(folders: Sequence[str | os.PathLike], required: Sequence[str | os.PathLike] = (),
                  patterns: Sequence[str] = ("*.csv", "*.md", "*.json", "*.png", "*.pdf")) -> tuple[int, list[str]]:
    """Check every file matching ``patterns`` in ``folders`` (not recursive) and every ``required``
    file with :func:`check_file`. Returns ``(files checked, problems)``."""
    files: dict[Path, None] = {Path(p): None for p in required}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            files[folder] = None  # reported as missing
            continue
        for pattern in patterns:
            for p in sorted(folder.glob(pattern)):
                files[p] = None
    problems = [msg for p in files for msg in check_file(p)]
    return len(files), problems
