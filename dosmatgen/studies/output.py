"""A study's output folder, written atomically: summary CSV + markdown, per-candidate CSV + JSON and
CIFs go into a staging folder that replaces the output folder in one rename
(:func:`dosmatgen.io.staged_folder`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.errors import DataError
from dosmatgen.generate.writer import safe_name
from dosmatgen.io import atomic_save_csv, atomic_save_json, atomic_write, csv_columns, staged_folder
from dosmatgen.studies.candidates import StudyCandidate


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    cols = list(columns) if columns else csv_columns(rows)

    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1e4 else f"{v:.3g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_cif(path: Path, record: CrystalRecord) -> None:
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(record.to_structure()))
    with atomic_write(path, "w") as f:
        f.write(text)


def write_study(out_dir: str | Path, *, study: str, title: str, summary_rows: Sequence[dict[str, Any]],
                summary_columns: Sequence[str] | None, candidates: Sequence[StudyCandidate],
                results: dict[str, Any], notes: Sequence[str] = (), extra_tables: dict[str, Any] | None = None,
                cif_filter: Any = None) -> Path:
    """Write a study's folder atomically:

    ``summary.csv`` / ``summary.md`` (one row per group, plus notes), ``candidates.csv`` (one row
    per candidate), ``results.json`` (config, target, summary, per-candidate rows, highlights for
    the figures), ``cifs/<group>/<candidate_id>.cif`` for every buildable candidate (or those
    accepted by ``cif_filter``), plus ``extra_tables`` name -> rows as ``<name>.csv``/``.md``.
    ``results`` gains the keys ``study``, ``notes`` and ``summary``.
    """
    out_dir = Path(out_dir)
    cand_rows = [c.row() for c in candidates]
    with staged_folder(out_dir) as stage:
        atomic_save_csv(stage / "summary.csv", summary_rows, summary_columns)
        md = [f"# {title}\n", markdown_table(summary_rows, summary_columns)]
        if notes:
            md.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
        for name, rows in (extra_tables or {}).items():
            atomic_save_csv(stage / f"{name}.csv", rows)
            md.append(f"\n## {name}\n\n" + markdown_table(rows))
            with atomic_write(stage / f"{name}.md", "w") as f:
                f.write(markdown_table(rows))
        with atomic_write(stage / "summary.md", "w") as f:
            f.write("\n".join(md))
        atomic_save_csv(stage / "candidates.csv", cand_rows)
        for c in candidates:
            if c.record is None or (cif_filter is not None and not cif_filter(c)):
                continue
            write_cif(stage / "cifs" / safe_name(c.group) / f"{c.candidate_id}.cif", c.record)
            relaxed = c.extra.get("_relaxed_record")
            if relaxed is not None:
                write_cif(stage / "cifs" / safe_name(c.group) / f"{c.candidate_id}-relaxed.cif", relaxed)
        results.update({"study": study, "notes": list(notes)})
        payload = dict(results)
        payload.update({"summary": list(summary_rows),
                        "candidates": [{k: v for k, v in r.items() if not k.startswith("_")} for r in cand_rows]})
        atomic_save_json(stage / "results.json", payload)
    results["summary"] = summary_rows
    return out_dir


def read_results(path: str | Path) -> dict[str, Any]:
    """``results.json`` of a study folder (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise DataError(f"no study results at {p}")
    return json.loads(p.read_text())
