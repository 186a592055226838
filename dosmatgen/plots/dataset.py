"""The two figures of ``dosmatgen data info``: one site's DOS, and the dataset's element and
atoms-per-cell histograms (stacked by source), in the one style of :mod:`dosmatgen.plots.style`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dosmatgen.data.info import resolve_site_index
from dosmatgen.data.schema import CrystalRecord, element_symbol
from dosmatgen.dos.grid import ENERGY_GRID
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.io import atomic_temp_path
from dosmatgen.plots.style import MAX_WIDTH, PNG_DPI, figure_style, new_figure

#: The figure files ``data info`` draws, by extension.
FIGURE_SUFFIXES: tuple[str, ...] = (".png", ".pdf", ".svg")
#: Bar colour of each dataset source (colour-blind-safe Okabe-Ito, as the other figures).
SOURCE_COLORS: dict[str, str] = {"prototypes": "#0072B2", "mp20": "#D55E00", "mp": "#009E73", "other": "#999999"}


def check_figure_path(path: str | Path, flag: str) -> None:
    """:class:`~dosmatgen.errors.ConfigError` unless ``path`` ends in one of :data:`FIGURE_SUFFIXES`
    (checked before any work, so a summary is never written and then its figure refused)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_SUFFIXES:
        raise ConfigError(f"{flag} {path}: a figure is one of {', '.join(FIGURE_SUFFIXES)}, not "
                          f"{suffix or 'a file without extension'}")


def _save(fig: Any, out_path: str | Path) -> None:
    out_path = Path(out_path)
    with atomic_temp_path(out_path) as tmp:
        fig.savefig(tmp, dpi=PNG_DPI, format=out_path.suffix.lstrip(".").lower())


def plot_site_dos(record: CrystalRecord, site: int | str, out_path: str | Path,
                  extra: dict[str, np.ndarray] | None = None) -> int:
    """Plot one site's DOS on :data:`ENERGY_GRID` (E − E_F) to ``out_path``; ``extra`` adds labelled
    curves (e.g. a generated DOS) on the same axes. Returns the site index used."""
    if record.dos is None:
        raise DataError(f"{record.structure_id} has no site DOS to plot")
    i = resolve_site_index(record, site)
    with figure_style():
        fig, axes = new_figure(panel_size=(4.8, 3.0))
        ax = axes[0, 0]
        el = element_symbol(record.atomic_numbers[i])
        ax.plot(ENERGY_GRID, record.dos[i], color="k", lw=1.2, label=f"{record.formula} site {i} ({el})")
        for label, curve in (extra or {}).items():
            ax.plot(ENERGY_GRID, np.asarray(curve), lw=1.0, label=label)
        ax.axvline(0.0, color="grey", lw=0.6, ls="--")
        ax.set(xlabel="E − E$_F$ (eV)", ylabel="DOS (states/eV/site)", xlim=(ENERGY_GRID[0], ENERGY_GRID[-1]),
               title=record.structure_id)
        ax.legend()
        _save(fig, out_path)
    return i


def _stacked_bars(ax_el: Any, ax_size: Any, summary: dict[str, Any], els: list[str], sizes: list[int]) -> None:
    """Element and size bars stacked by source (``summary["by_source"]``), or one series."""
    by_source = summary.get("by_source") or {}
    if len(by_source) <= 1:
        by_source = {"all": summary}
    el_bottom, size_bottom = np.zeros(len(els)), np.zeros(len(sizes))
    for src, v in by_source.items():
        colour = SOURCE_COLORS.get(src, "#0072B2")
        h = np.array([v["element_counts"].get(e, 0) for e in els], dtype=float)
        ax_el.bar(range(len(els)), h, bottom=el_bottom, color=colour, label=f"{src} ({v['n_structures']})")
        el_bottom += h
        counts = {int(n): c for n, c in v["size_histogram"].items()}  # JSON turns int keys into strings
        h = np.array([counts.get(n, 0) for n in sizes], dtype=float)
        ax_size.bar(sizes, h, bottom=size_bottom, color=colour)
        size_bottom += h
    if len(by_source) > 1:
        ax_el.legend()


def plot_dataset_figure(summary: dict[str, Any], out_path: str | Path, title: str = "") -> None:
    """Two panels, one above the other (each readable at the README's width): structures containing
    each element (ordered as the summary lists them) and the atoms-per-cell histogram; with more
    than one source (``summary["by_source"]``) the bars are stacked by source."""
    from matplotlib.ticker import MaxNLocator

    els = list(summary["element_counts"])
    sizes = [int(n) for n in summary["size_histogram"]]
    with figure_style():
        fig, axes = new_figure(2, 1, panel_size=(MAX_WIDTH, 2.6))
        ax_el, ax_size = axes[:, 0]
        _stacked_bars(ax_el, ax_size, summary, els, sizes)
        ax_el.set_xticks(range(len(els)))
        ax_el.set_xticklabels(els, rotation=90, fontsize=7 if len(els) < 60 else 6)
        ax_el.set(ylabel="structures with element", xlim=(-0.7, len(els) - 0.3))
        ax_size.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_size.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_size.set(xlabel="atoms per cell", ylabel="structures")
        fig.suptitle(title or f"{summary['n_structures']} structures, {summary['n_elements']} elements")
        _save(fig, out_path)
