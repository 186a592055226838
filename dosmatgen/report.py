"""A single self-contained HTML page of a workflow run: tables, figures, claims and provenance.

``results/report.html`` is written by the workflow's ``report`` rule (``dosmatgen figures report``).
Tables are the CSV files of the results folder (Table 1, Table 2, studies ...), figures the PNGs
of the figure folders (embedded as data URIs, so the page can be mailed or archived alone),
provenance the run's provenance JSON (config, code version, data, timings). Everything is escaped;
nothing is fetched from the network when the page is opened.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dosmatgen.errors import DataError
from dosmatgen.io import atomic_write
from dosmatgen.plots.gallery import gallery_entries, title_from_stem

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#444}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}.muted{color:#777}
nav a{margin-right:1em}
"""


def read_csv_table(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (all cells as text)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"table {path} cannot be read: {exc}") from None
    if not rows:
        raise DataError(f"table {path} is empty")
    return rows[0], rows[1:]


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for cell in row:
            text = html.escape(str(cell))
            upper = str(cell).strip().upper()
            if upper in ("PASS", "FAIL"):
                text = f'<span class="{upper.lower()}">{text}</span>'
            cells.append(f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _figure_html(png: Path, title: str, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    cap = f"<b>{html.escape(title)}</b>" + (f" — {html.escape(caption)}" if caption else "")
    return (f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap} <span class=\"muted\">({html.escape(png.name)})</span></figcaption></figure>")


def render_report(tables: Sequence[tuple[str, list[str], list[list[str]]]],
                  figures: Sequence[tuple[Path, str, str]], provenance: dict[str, Any] | None, *,
                  title: str = "DOSMatGen replication report", notes: Sequence[tuple[str, str]] = ()) -> str:
    """HTML text of the report.

    Args:
        tables: ``(name, header, rows)`` per table.
        figures: ``(png_path, title, caption)`` per figure.
        provenance: the run's provenance dict (shown as JSON), or None.
        notes: ``(heading, preformatted text)`` extra sections, e.g. the claims check output.
    """
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">Generated {stamp} by dosmatgen. '
             f"{len(tables)} tables, {len(figures)} figures.</p>",
             '<nav><a href="#tables">Tables</a><a href="#figures">Figures</a>'
             + "".join(f'<a href="#note{i}">{html.escape(h)}</a>' for i, (h, _) in enumerate(notes))
             + '<a href="#provenance">Provenance</a></nav>']
    if provenance:
        summary = {k: provenance[k] for k in ("profile", "description", "data_source", "device", "git", "dosmatgen")
                   if k in provenance and not isinstance(provenance[k], (dict, list))}
        if summary:
            parts.append(_html_table(["run", "value"], [[k, str(v)] for k, v in summary.items()]))
    parts.append('<h2 id="tables">Tables</h2>')
    if not tables:
        parts.append('<p class="muted">No tables found.</p>')
    for name, header, rows in tables:
        parts += [f"<h3>{html.escape(title_from_stem(name))}</h3>", f'<p class="muted">{html.escape(name)}.csv</p>',
                  _html_table(header, rows)]
    parts.append('<h2 id="figures">Figures</h2>')
    if not figures:
        parts.append('<p class="muted">No figures found.</p>')
    parts += [_figure_html(png, fig_title, caption) for png, fig_title, caption in figures]
    parts += [f'<h2 id="note{i}">{html.escape(heading)}</h2><pre>{html.escape(text)}</pre>'
              for i, (heading, text) in enumerate(notes)]
    parts.append('<h2 id="provenance">Provenance</h2>')
    if provenance:
        parts.append(f"<pre>{html.escape(json.dumps(provenance, indent=2, sort_keys=True, default=str))}</pre>")
    else:
        parts.append('<p class="muted">No provenance file given.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


#: Table order in the report: the paper's tables, the formation summary, the studies, the rest.
TABLE_ORDER = ("table1", "table2", "formation", "study_masked", "study_template", "study_fixed", "study_screen",
               "study_window")


def _table_rank(path: Path) -> tuple[int, str]:
    name = path.stem.lower()
    return next((i for i, p in enumerate(TABLE_ORDER) if name.startswith(p)), len(TABLE_ORDER)), name


def build_report(results_dir: str | os.PathLike, figure_dirs: Sequence[str | os.PathLike], out: str | os.PathLike,
                 *, provenance: str | os.PathLike | None = None, notes: Sequence[str | os.PathLike] = (),
                 title: str = "DOSMatGen replication report") -> Path:
    """Collect ``results_dir/*.csv``, the PNGs of ``figure_dirs`` and ``provenance`` into ``out``.

    ``notes`` are text files (e.g. the claims check) shown verbatim, each under its file name.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(f"results folder {results_dir} does not exist")
    tables = []
    for path in sorted(results_dir.glob("*.csv"), key=_table_rank):
        header, rows = read_csv_table(path)
        tables.append((path.stem, header, rows))
    figures: list[tuple[Path, str, str]] = []
    seen: set[Path] = set()
    for folder in figure_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for entry in gallery_entries(folder):
            png = (folder / entry["png"]).resolve()
            if png not in seen:
                seen.add(png)
                figures.append((png, entry["title"], entry["caption"]))
    prov = None
    if provenance is not None:
        ppath = Path(provenance)
        if not ppath.exists():
            raise DataError(f"provenance file {ppath} does not exist")
        try:
            prov = json.loads(ppath.read_text(encoding="utf-8"))
        except ValueError as exc:  # not UTF-8, not JSON
            raise DataError(f"provenance file {ppath} cannot be read: {exc}") from None
    note_sections = [(Path(n).name, Path(n).read_text()) for n in notes if Path(n).exists()]
    text = render_report(tables, figures, prov, title=title, notes=note_sections)
    out = Path(out)
    with atomic_write(out, "w") as f:
        f.write(text)
    return out


#: Cells that mean "not a number" in a table.
_BAD_CELLS = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "-infinity"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def check_file(path: str | os.PathLike) -> list[str]:
    """Problems of one output file (empty list = fine): exists, non-empty, parses for its type,
    no NaN / inf in tables (CSV cells, Markdown cells) or JSON numbers.

    Types: .csv (a header and at least one row of equal width), .md, .json, .png (valid image),
    .pdf (``%PDF`` header, ``%%EOF`` trailer), .html (closed ``</html>``); other files: non-empty.
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
            header, rows = read_csv_table(path)
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
        elif suffix == ".html":
            if "</html>" not in path.read_text(errors="replace")[-200:].lower():
                problems.append(f"{path}: HTML not closed (truncated?)")
    except (ValueError, OSError, DataError, SyntaxError) as exc:
        problems.append(f"{path}: unreadable {suffix or 'file'}: {exc}")
    return problems


def check_outputs(folders: Sequence[str | os.PathLike], required: Sequence[str | os.PathLike] = (),
                  patterns: Sequence[str] = ("*.csv", "*.md", "*.json", "*.png", "*.pdf", "*.html")) -> tuple[int, list[str]]:
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
