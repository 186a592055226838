"""One look for every figure: a seaborn theme, sizes, fonts, colours per series, and PNG + PDF saving.

Figures are built on :class:`matplotlib.figure.Figure` directly (no ``pyplot`` global state, no
backend switch at import), so plotting works headless and in worker processes; the look is set
only inside :func:`figure_style` (importing changes no rcParams). Every figure is
written twice, ``<stem>.png`` (300 dpi, for the README gallery and the HTML report) and
``<stem>.pdf`` (vector, for papers), atomically; the PNG carries its caption as ``Title`` /
``Description`` text metadata so the gallery (:mod:`dosmatgen.plots.gallery`) can show it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from dosmatgen.io import atomic_temp_path

#: Colour of each series, shared by all figures (colour-blind-safe Okabe-Ito palette).
COLORS: dict[str, str] = {"ground_truth": "#000000", "cfg": "#0072B2", "classifier": "#D55E00", "relaxed": "#009E73",
                          "unrelaxed": "#E69F00", "target": "#000000", "generated": "#0072B2", "dft": "#009E73"}
#: Human-readable names of guidance modes.
GUIDANCE_LABELS: dict[str, str] = {"cfg": "classifier-free guidance", "classifier": "classifier-based guidance"}

#: Settings on top of seaborn's "ticks" style and "paper" context (:func:`figure_style`).
RC_PARAMS: dict[str, object] = {
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False, "font.family": "DejaVu Sans",
    "savefig.bbox": "tight", "svg.fonttype": "none",
    "pdf.fonttype": 42,  # embed TrueType: text stays editable in the PDF
}
PNG_DPI = 300
#: Widest figure, inches: the README shows a figure at most ~850 px wide, where the "paper" context's
#: 9.7 pt ticks (font_scale 1.1; 10.6 pt text) of a figure this wide are ~15 px high.
MAX_WIDTH = 7.5


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Context in which every figure is created and saved: one seaborn theme ("ticks" style, "paper"
    context, colour-blind palette) plus :data:`RC_PARAMS`; nothing is changed outside it."""
    import matplotlib as mpl
    import seaborn as sns

    rc = {**sns.axes_style("ticks"), **sns.plotting_context("paper", font_scale=1.1), **RC_PARAMS,
          "axes.prop_cycle": mpl.cycler(color=sns.color_palette("colorblind"))}
    with mpl.rc_context(rc):
        yield


def new_figure(nrows: int = 1, ncols: int = 1, *, panel_size: tuple[float, float] = (3.4, 2.6),
               sharex: bool = False, sharey: bool = False):
    """A ``Figure`` and its 2-D axes array, ``panel_size`` inches per panel, at most :data:`MAX_WIDTH` wide."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(panel_size[0] * ncols, MAX_WIDTH), panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False)
    return fig, axes


def panel_label(ax, letter: str) -> None:
    """Bold ``(a)``-style panel letter at the top left, as in the paper's figures, followed by the
    panel's title (moved to the left, so narrow panels keep letter and title apart)."""
    ax.set_title(f"$\\bf{{({letter})}}$ {ax.get_title()}".rstrip(), loc="left")
    ax.set_title("")


def save_figure(fig, out_dir: str | os.PathLike, stem: str, *, title: str = "", caption: str = "") -> list[Path]:
    """Write ``out_dir/stem.png`` and ``out_dir/stem.pdf`` atomically; return both paths.

    ``title`` and ``caption`` go into the PNG's text metadata (read back by the gallery) and the
    PDF's document info.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, meta in (("png", {"Title": title, "Description": caption, "Software": "dosmatgen"}),
                      ("pdf", {"Title": title, "Subject": caption, "Creator": "dosmatgen"})):
        path = out_dir / f"{stem}.{ext}"
        with atomic_temp_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=PNG_DPI, metadata=meta)
        paths.append(path)
    return paths


def read_png_caption(path: str | os.PathLike) -> tuple[str, str]:
    """``(title, caption)`` stored in a PNG by :func:`save_figure` (empty strings if absent)."""
    from PIL import Image

    with Image.open(path) as im:
        text = getattr(im, "text", {}) or {}
        return str(text.get("Title", "")), str(text.get("Description", ""))
