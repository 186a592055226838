"""``figures/README.md``: a gallery of every figure in a folder, with captions and PDF links.

Captions come from the PNG's text metadata written by :func:`dosmatgen.plots.style.save_figure`;
figures without one get their file name as title. The order follows the paper (the dataset, Fig. 2,
B.1, the constrained-generation studies 4-6, the IrO2 screen 7, 8, C.1, the window sweep), then
anything else alphabetically.
"""

from __future__ import annotations

import os
from pathlib import Path

from dosmatgen.io import atomic_write
from dosmatgen.plots.style import read_png_caption

#: File-name prefixes in gallery order (paper order); unknown names go last.
ORDER = ("dataset", "fig2", "figb1", "fig4", "fig5", "fig6", "fig7", "fig8", "figc1", "masked", "template",
         "fixed", "screen", "iro2", "window")


def _rank(stem: str) -> tuple[int, str]:
    low = stem.lower()
    for i, prefix in enumerate(ORDER):
        if low.startswith(prefix):
            return i, low
    return len(ORDER), low


def title_from_stem(stem: str) -> str:
    """``fig2_formation-T1000`` -> ``Fig2 formation t1000``: a readable title from a file name."""
    return stem.replace("_", " ").replace("-", " ").strip().capitalize()


def gallery_entries(figures_dir: str | os.PathLike) -> list[dict[str, str]]:
    """One entry per PNG in ``figures_dir``: ``stem``, ``png``, ``pdf`` (or ""), ``title``, ``caption``."""
    figures_dir = Path(figures_dir)
    entries = []
    for png in sorted(figures_dir.glob("*.png"), key=lambda p: _rank(p.stem)):
        title, caption = read_png_caption(png)
        pdf = png.with_suffix(".pdf")
        entries.append({"stem": png.stem, "png": png.name, "pdf": pdf.name if pdf.exists() else "",
                        "title": title or title_from_stem(png.stem), "caption": caption})
    return entries


def render_gallery(entries: list[dict[str, str]], *, heading: str = "Figures", intro: str = "") -> str:
    """Markdown text of the gallery."""
    lines = [f"# {heading}", ""]
    if intro:
        lines += [intro, ""]
    if not entries:
        lines += ["*(no figures yet: run `snakemake --cores all figures`)*", ""]
    else:
        lines += ["| figure | files |", "|---|---|"]
        for e in entries:
            files = f"[PNG]({e['png']})" + (f" · [PDF]({e['pdf']})" if e["pdf"] else "")
            lines.append(f"| [{e['title']}](#{_anchor(e['title'])}) | {files} |")
        lines.append("")
    for e in entries:
        lines += [f"## {e['title']}", ""]
        if e["caption"]:
            lines += [e["caption"], ""]
        lines += [f"![{e['title']}]({e['png']})", ""]
        if e["pdf"]:
            lines += [f"Vector version: [{e['pdf']}]({e['pdf']})", ""]
    return "\n".join(lines)


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, punctuation dropped."""
    keep = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return keep.replace(" ", "-")


def write_gallery(figures_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                  intro: str = "") -> Path:
    """Write the gallery of ``figures_dir`` to ``out`` (default ``figures_dir/README.md``)."""
    figures_dir = Path(figures_dir)
    out = Path(out) if out is not None else figures_dir / "README.md"
    text = render_gallery(gallery_entries(figures_dir), intro=intro)
    with atomic_write(out, "w") as f:
        f.write(text)
    return out
