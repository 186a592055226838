"""Figures of the constrained-generation studies and the screening workflow (paper §3.2-3.3).

Every function reads the ``results.json`` a study wrote (:mod:`dosmatgen.studies`) and writes
``<stem>.png`` + ``<stem>.pdf`` through :func:`dosmatgen.plots.style.save_figure`:

* Fig. 4 (masked), Fig. 5 (template), Fig. 6 (fixed type): per highlighted candidate, the target
  site DOS against the surrogate DOS of the generated crystal's first atom (top row) and the
  crystal drawn as a 2x2x2 supercell (bottom row; Fig. 5 starts with the template);
* Fig. 7: formation energies of the screening candidates, unrelaxed vs relaxed, with the threshold;
* Fig. 8: target vs surrogate vs DFT DOS of the first atom of the screening's top candidates;
  Fig. C.1: their relaxed structures;
* the ω-sweep figure of the window study: DOS match, composition diversity, stability and earth
  abundance against ω, one line per energy window.

:func:`make_study_figures` draws whichever of these the study folders under a results folder allow
(``dosmatgen studies figures --results DIR --out DIR``).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.dos.grid import ENERGY_GRID
from dosmatgen.errors import DataError
from dosmatgen.plots.formation import PHYSICAL_RANGE, _finite, common_bins
from dosmatgen.plots.style import COLORS, figure_style, new_figure, panel_label, save_figure

#: results.json "study" -> file stems of its figures
FIGURE_STEMS: dict[str, list[str]] = {
    "masked": ["fig4_masked"], "template": ["fig5_template"], "fixed_type": ["fig6_fixed_type"],
    "screen": ["fig7_screen_formation", "fig8_screen_dos", "figC1_screen_structures"], "window": ["window_sweep"]}
HIGHLIGHT = "#D00000"  # the paper marks the first atom's element in red
#: Cells with a lattice vector longer than this (Å) are not drawn (ASE's renderer stalls on them).
MAX_DRAW_LENGTH: float = 60.0


def _load(results: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(results, dict):
        return results
    from dosmatgen.studies.output import read_results

    return read_results(results)


def _atoms(structure: dict[str, Any]):
    from ase import Atoms

    return Atoms(numbers=structure["atomic_numbers"], scaled_positions=structure["frac_coords"],
                 cell=structure["lattice"], pbc=True)


def draw_structure(ax, structure: dict[str, Any] | None, repeat: int = 2) -> None:
    """A crystal as a ``repeat``^3 supercell (ASE's matplotlib renderer, Jmol colours)."""
    ax.set_axis_off()
    if structure is None:
        ax.text(0.5, 0.5, "no structure", ha="center", va="center", transform=ax.transAxes)
        return
    from ase.visualize.plot import plot_atoms

    lengths = np.linalg.norm(np.asarray(structure["lattice"], dtype=float), axis=1)
    if not np.all(np.isfinite(lengths)) or lengths.max() > MAX_DRAW_LENGTH:
        ax.text(0.5, 0.5, f"cell too large to draw\n(longest vector {lengths.max():.3g} Å)", ha="center",
                va="center", transform=ax.transAxes, fontsize="small")
        return
    sup = _atoms(structure).repeat((repeat, repeat, repeat))
    try:
        plot_atoms(sup, ax, rotation="15x,-25y,0z", radii=0.45, show_unit_cell=2)
    except Exception as exc:  # a pathological cell must not abort the whole figure
        ax.text(0.5, 0.5, f"cannot draw: {type(exc).__name__}", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_aspect("equal")
    element_legend(ax, structure["atomic_numbers"])


def element_legend(ax, atomic_numbers: Sequence[int]) -> None:
    """A key of the drawing's colours below ``ax``: one Jmol-coloured disc per element, in the
    order of first appearance."""
    from ase.data import chemical_symbols
    from ase.data.colors import jmol_colors
    from matplotlib.lines import Line2D

    zs = list(dict.fromkeys(int(z) for z in atomic_numbers))
    handles = [Line2D([], [], ls="", marker="o", ms=6, markerfacecolor=jmol_colors[z], markeredgecolor="k",
                      markeredgewidth=0.6, label=chemical_symbols[z]) for z in zs]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=min(5, len(zs)),
              fontsize="x-small", frameon=False, handletextpad=0.1, columnspacing=0.7)


def dos_panel(ax, target: np.ndarray, generated: np.ndarray | None, *, dft: np.ndarray | None = None,
              target_label: str = "target", xlim: tuple[float, float] = (-10, 10),
              window: Sequence[float] | None = None) -> None:
    """Target (black) vs generated/surrogate (blue) [vs DFT (green)] site DOS."""
    ax.plot(ENERGY_GRID, target, color=COLORS["target"], lw=1.1, label=target_label)
    if generated is not None:
        ax.plot(ENERGY_GRID, generated, color=COLORS["generated"], lw=1.1, label="generated (surrogate)")
    if dft is not None:
        ax.plot(ENERGY_GRID, dft, color=COLORS["dft"], lw=1.1, label="generated (DFT)")
    if window is not None:
        ax.axvspan(window[0], window[1], color="0.9", zorder=0)
    ax.axvline(0.0, color="0.6", lw=0.6, ls=":")
    ax.set_xlim(*xlim)
    ax.set_xlabel("E − E$_F$ (eV)")
    ax.set_ylabel("DOS (states/eV/site)")


def _figure_legend(fig, axes) -> None:
    """One legend below the panels with every distinct curve label."""
    handles, labels = [], []
    for ax in axes.flat:
        for hnd, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(hnd)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)))


def _title(ax_dos, ax_structure, h: dict[str, Any]) -> None:
    """The candidate's formula above its DOS; its first atom and DOS match above its drawing (so
    that no text covers a curve)."""
    formula = h.get("formula") or h.get("candidate_id")
    ax_dos.set_title(f"{h.get('label', '')}\n{formula}", fontsize="medium")
    info = f"first atom {h.get('first_element')}"
    if h.get("dos_mae") is not None:
        info += f"\nMAE {h['dos_mae']:.3f} · cos {h.get('cosine', float('nan')):.2f}"
    ax_structure.set_title(info, fontsize="small", color=HIGHLIGHT)


def plot_dos_and_structures(results: dict[str, Any] | str | Path, out_dir: str | Path, stem: str, *,
                            title: str, caption: str, with_template: bool = False) -> list[Path]:
    """Shared layout of Fig. 4-6: one column per highlighted candidate (DOS on top, 2x2x2
    supercell below), optionally the template first."""
    res = _load(results)
    highlights = res.get("highlights") or []
    target = np.asarray(res["target"]["dos"], dtype=float)
    tname = f"{res['target']['element']} in {res['target'].get('formula') or res['target']['structure_id']}"
    cols = len(highlights) + (1 if with_template else 0)
    if cols == 0:
        raise DataError(f"{stem}: the study has no scored candidate to plot")
    with figure_style():
        fig, axes = new_figure(2, cols, panel_size=(2.9, 2.5))
        k = 0
        if with_template:
            tmpl = res.get("template") or {}
            tdos = tmpl.get("first_atom_dos")
            dos_panel(axes[0, 0], target, None, target_label=f"target ({tname})")
            if tdos is not None:
                axes[0, 0].plot(ENERGY_GRID, tdos, color="0.55", lw=1.0, label="template, first atom")
            axes[0, 0].set_title(f"template\n{tmpl.get('formula', '?')}", fontsize="medium")
            draw_structure(axes[1, 0], tmpl.get("structure"))
            k = 1
        for j, h in enumerate(highlights):
            ax = axes[0, k + j]
            pred = None if h.get("pred_dos") is None else np.asarray(h["pred_dos"], dtype=float)
            dos_panel(ax, target, pred, target_label=f"target ({tname})")
            draw_structure(axes[1, k + j], h.get("structure"))
            _title(ax, axes[1, k + j], h)
        for j in range(cols):
            panel_label(axes[0, j], "abcdefghijklmnopqrstuvwxyz"[j])
        _figure_legend(fig, axes)
        fig.suptitle(title)
        return save_figure(fig, out_dir, stem, title=title, caption=caption)


def plot_fig4(results, out_dir) -> list[Path]:
    return plot_dos_and_structures(
        results, out_dir, "fig4_masked", title="Masked generation (Fig. 4)",
        caption="First atom conditioned on the target site DOS, the other atoms unconditioned; best candidate "
                "(lowest surrogate DOS MAE) per atom count. Blue: surrogate DOS of the first atom; black: "
                "target. Structures drawn as 2x2x2 supercells.")


def plot_fig5(results, out_dir) -> list[Path]:
    return plot_dos_and_structures(
        results, out_dir, "fig5_template", with_template=True, title="Template-guided generation (Fig. 5)",
        caption="Template noised to t0 and denoised with its minority-element atoms conditioned on the target "
                "DOS; best candidate per t0. Left: the template (grey: its first atom's own DOS).")


def plot_fig6(results, out_dir) -> list[Path]:
    return plot_dos_and_structures(
        results, out_dir, "fig6_fixed_type", title="Fixed atom type generation (Fig. 6)",
        caption="First atom clamped to the given element and conditioned on the target DOS; best candidate per "
                "element.")


def plot_fig7(results, out_dir) -> list[Path]:
    """Formation energy per atom of the screening candidates, unrelaxed vs relaxed (Fig. 7)."""
    res = _load(results)
    form = res.get("formation") or {}
    unrel, rel = (_finite(form.get(f"ef_{state}") or []) for state in ("unrelaxed", "relaxed"))  # None: NaN, dropped
    if unrel.size == 0 and rel.size == 0:
        raise DataError("fig7: the screening has no formation energies")
    import seaborn as sns

    thr = form.get("threshold")
    edges = common_bins([unrel, rel], 40)
    if thr is not None and thr - 0.5 < edges[0]:
        edges = np.linspace(thr - 0.5, edges[-1], 41)
    with figure_style():
        fig, axes = new_figure(1, 1, panel_size=(4.6, 3.0))
        ax = axes[0, 0]
        for name, vals in ((n, v) for n, v in (("unrelaxed", unrel), ("relaxed", rel)) if v.size):
            sns.histplot(x=np.clip(vals, edges[0], edges[-1]), bins=edges, element="step", color=COLORS[name],
                         alpha=0.3, label=f"{name} (n={vals.size}, median {np.median(vals):.2f})", ax=ax)
        floor = (res.get("config") or {}).get("min_plausible_ef")
        blown = rel < floor if floor is not None else np.zeros(rel.shape, dtype=bool)
        if thr is not None:
            n_pass = int(np.sum((rel <= thr) & ~blown))
            ax.axvline(thr, color="k", ls="--", lw=0.9, label=f"threshold {thr:g} eV/atom ({n_pass} pass)")
        if blown.any():
            ax.axvline(floor, color="0.4", ls=":", lw=0.9,
                       label=f"below {floor:g} eV/atom: MLFF blow-ups, excluded ({int(blown.sum())})")
        ax.set_xlabel("formation energy (eV/atom)")
        ax.set_ylabel("structures")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.26))
        title = "Screening: formation energies (Fig. 7)"
        ax.set_title(title)
        caption = (f"Formation energy per atom ({form.get('mlff', 'MLFF')}) of the generated screening "
                   "candidates before and after MLFF relaxation; relaxed values below the screening's plausibility "
                   "floor are MLFF blow-ups, not counted as passing; values outside the 0.5-99.5 % range (at most "
                   f"{PHYSICAL_RANGE[0]:g} to {PHYSICAL_RANGE[1]:g} eV/atom) are clipped into the edge bins.")
        return save_figure(fig, out_dir, "fig7_screen_formation", title=title, caption=caption)


def plot_fig8(results, out_dir) -> list[Path]:
    """Target vs surrogate vs DFT DOS of the first atom of the top screening candidates (Fig. 8)."""
    res = _load(results)
    hs = res.get("highlights") or []
    if not hs:
        raise DataError("fig8: the screening has no ranked candidate")
    target = np.asarray(res["target"]["dos"], dtype=float)
    cols = min(4, len(hs))
    rows = math.ceil(len(hs) / cols)
    with figure_style():
        fig, axes = new_figure(rows, cols, panel_size=(2.9, 2.3))
        for i, h in enumerate(hs):
            ax = axes[i // cols, i % cols]
            pred = None if h.get("pred_dos") is None else np.asarray(h["pred_dos"], dtype=float)
            dft = None if h.get("dft_dos") is None else np.asarray(h["dft_dos"], dtype=float)
            dos_panel(ax, target, pred, dft=dft)
            ef = h.get("ef_relaxed")
            info = f"first atom {h.get('first_element')}" + ("" if ef is None else f" · E$_f$ {ef:.2f} eV/atom")
            if dft is None:
                info += f" · DFT: {str(h.get('dft_status') or 'not run')[:28]}"
            ax.set_title(f"#{h.get('rank')} {h.get('formula')}\n{info}", fontsize="small")
        for j in range(len(hs), rows * cols):
            axes[j // cols, j % cols].set_axis_off()
        _figure_legend(fig, axes)
        title = "Screening: DOS of the selected candidates (Fig. 8)"
        caption = ("First atom conditioned on the target site DOS. Black: target; blue: surrogate DOS of the "
                   "first atom of the relaxed candidate; green: DFT (GPAW) site DOS of the same atom.")
        return save_figure(fig, out_dir, "fig8_screen_dos", title=title, caption=caption)


def plot_figC1(results, out_dir) -> list[Path]:
    """Relaxed structures of the top screening candidates (Appendix C.1)."""
    res = _load(results)
    hs = res.get("highlights") or []
    if not hs:
        raise DataError("figC1: the screening has no ranked candidate")
    cols = min(4, len(hs))
    rows = math.ceil(len(hs) / cols)
    with figure_style():
        fig, axes = new_figure(rows, cols, panel_size=(2.6, 2.6))
        for i, h in enumerate(hs):
            ax = axes[i // cols, i % cols]
            draw_structure(ax, h.get("structure"))
            ax.set_title(f"#{h.get('rank')} {h.get('formula')} (first: {h.get('first_element')})", fontsize="small")
        for j in range(len(hs), rows * cols):
            axes[j // cols, j % cols].set_axis_off()
        title = "Screening: selected structures (Fig. C.1)"
        caption = "Relaxed structures of the DFT-validated screening candidates, drawn as 2x2x2 supercells."
        return save_figure(fig, out_dir, "figC1_screen_structures", title=title, caption=caption)


def plot_window_sweep(results, out_dir) -> list[Path]:
    """DOS match, composition diversity, stability and earth abundance against ω, one line per
    energy window."""
    res = _load(results)
    rows = res.get("summary") or []
    if not rows:
        raise DataError("window sweep: no summary rows")
    # (key, axis label, a fraction: drawn on [0, 1] so that one candidate in 24 looks its size)
    panels = [("mean_win_dos_mae", "DOS MAE in scoring window\n(states/eV/site)", False),
              ("composition_diversity", "composition diversity\n(unique formulas / n)", True),
              ("median_ef_relaxed", "median E$_f$ relaxed (eV/atom)", False),
              ("all_earth_abundant", "all-earth-abundant fraction", True)]
    windows = list(dict.fromkeys(r["window"] for r in rows))
    with figure_style():
        fig, axes = new_figure(2, 2, panel_size=(3.4, 2.5))
        for p, (key, label, fraction) in enumerate(panels):
            ax = axes.flat[p]
            for w, marker, line in zip(windows, itertools.cycle("osD^v"), itertools.cycle(("-", "--", "-.", ":"))):
                pts = sorted((r["omega"], r.get(key)) for r in rows if r["window"] == w and r.get(key) is not None)
                if pts:  # markers and dashes tell overlapping lines apart
                    ax.plot([x for x, _ in pts], [y for _, y in pts], marker=marker, ms=4, ls=line, label=w)
            if fraction:
                ax.set_ylim(-0.04, 1.04)
            ax.set_xlabel("guidance strength ω")
            ax.set_ylabel(label)
            panel_label(ax, "abcd"[p])
        axes[0, 0].legend(title="window")
        sw = res.get("score_window")
        title = "Energy-window targets: guidance sweep"
        fig.suptitle(title)
        caption = (f"Target {res['target']['element']} site DOS, conditioned on the whole DOS (full) or on a "
                   f"window around E_F; DOS MAE scored in [{sw[0]:g}, {sw[1]:g}] eV for every group." if sw else "")
        return save_figure(fig, out_dir, "window_sweep", title=title, caption=caption)


FIGURES = {"masked": [plot_fig4], "template": [plot_fig5], "fixed_type": [plot_fig6],
           "screen": [plot_fig7, plot_fig8, plot_figC1], "window": [plot_window_sweep]}


def make_study_figures(results_root: str | Path, out_dir: str | Path) -> dict[str, list[Path]]:
    """Draw every figure the study folders under ``results_root`` allow (each folder's
    ``results.json`` says which study it holds; ``results_root`` may itself be a study folder).

    Returns ``{figure stem: written paths}``; a figure that cannot be drawn (e.g. no ranked
    candidate) is reported under ``"skipped:<stem>"`` with the reason as its only entry."""
    from dosmatgen.studies.output import read_results

    root = Path(results_root)
    if not root.exists():
        raise DataError(f"study results folder {root} does not exist")
    folders = [root] if (root / "results.json").exists() else sorted(
        p for p in root.iterdir() if p.is_dir() and (p / "results.json").exists())
    if not folders:
        raise DataError(f"no study results (results.json) under {root}")
    written: dict[str, list[Path]] = {}
    for folder in folders:
        res = read_results(folder)
        study = res.get("study")
        for fn, stem in zip(FIGURES.get(study, []), FIGURE_STEMS.get(study, [])):
            try:
                written[stem] = fn(res, out_dir)
            except DataError as exc:
                written[f"skipped:{stem}"] = [Path(str(exc))]
    return written
