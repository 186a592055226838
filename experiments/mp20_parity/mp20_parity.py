"""Parity of the labelled MP-20 crystals against the Materials Project's own numbers (issue 18).

For every MP-20 crystal labelled so far in the built-in shards (``resources/builtin``, ids
``mp20-<material_id>``, :func:`dosmatgen.data.split.record_source` ``mp20``), compare

* **band gap**: our GPAW gap (the record's provenance ``gap``: PBE, LCAO dzp, on MP's geometry,
  the smallest eigenvalue gap across E_F on the DOS k mesh) with MP's ``band_gap`` from the pool.
  A record whose gap is not finite (``Infinity``: the dzp basis left no empty band above E_F) has
  no gap to compare; it is counted and listed, never plotted.  Metal / non-metal: gap at most
  ``--metal-threshold`` eV (default 0.3 eV, the labelling protocol's ``gap_threshold``; on a
  finite k mesh a metal's eigenvalue gap is small but not zero) on both sides.
* **formation energy**: our MLFF formation energy (SevenNet 7net-0 through
  :func:`dosmatgen.evaluate.formation.compute_formation_energies`, ASE FIRE + FrechetCellFilter
  relaxation from MP's geometry, elemental references of the same MLFF, cached in a private copy
  of ``--refs-cache``) with MP's ``formation_energy_per_atom`` from the pool.  MP's number carries
  MP's empirical corrections (GGA/GGA+U mixing and fitted anion corrections); ours carries none.
  For every crystal the MP2020 correction pymatgen would apply (``MaterialsProject2020Compatibility``
  on the composition and structure) is recorded, and the parity is reported with and without it
  -- a diagnostic, since the pool does not say which correction scheme MP-20's numbers carry.

Written: ``--out-json`` (every number, the per-crystal rows, the exact command) and two figures
(PNG and a PDF beside each), each a parity scatter and the distribution of ours - MP (for E_f
without and with the MP2020 correction); ``--redraw-from`` draws them again from a result JSON,
computing nothing (every number drawn is recomputed from its rows and checked against its summary).  The sample is small (the labelling runs in the background, cheapest cells first) and
the JSON says so: it is a smoke check of the protocol on real crystals, not a benchmark.

    .venv/bin/python experiments/mp20_parity/mp20_parity.py [--shards resources/builtin] [--pool resources/mp20/mp20_pool.json]
        [--out-json results/mp20_parity.json] [--fig-gap figures/mp20_parity_gap.png]
        [--fig-ef figures/mp20_parity_ef.png] [--steps 200] [--fmax 0.05] [--no-formation]
    .venv/bin/python experiments/mp20_parity/mp20_parity.py --redraw-from results/mp20_parity.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the repository root
DEFAULT_REFS = ROOT / "work" / "demo" / "formation" / "elemental_refs_sevenn.json"
#: A gap at most this (eV) is a metal, on both sides (the labelling protocol's gap_threshold).
METAL_THRESHOLD: float = 0.3


# ---- pure functions (tested in tests/test_mp20_source.py) ----------------------------------------
def finite_or_none(x: Any) -> float | None:
    """``x`` as a float when it is a finite number, else None (``Infinity``, NaN, None, text).

    >>> [finite_or_none(v) for v in (1.5, float("inf"), None, "x", float("nan"))]
    [1.5, None, None, None, None]
    """
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def is_metal(gap: float, threshold: float = METAL_THRESHOLD) -> bool:
    return gap <= threshold


def gap_parity(ours: Mapping[str, Any], mp: Mapping[str, Any], threshold: float = METAL_THRESHOLD) -> dict[str, Any]:
    """Band-gap parity of the ids in ``ours`` (id -> our gap, possibly ``inf``) against ``mp``
    (id -> MP's gap).  Ids whose gap is not finite on either side are excluded and listed by side;
    the rest give the MAE (all, and over MP non-metals), the signed mean (ours - MP) and the
    metal / non-metal confusion counts at ``threshold`` eV.

    >>> g = gap_parity({"a": 1.0, "b": float("inf"), "c": 0.05}, {"a": 1.5, "b": 2.0, "c": 0.0})
    >>> g["n_total"], g["n"], g["n_infinite_ours"], g["excluded_ours"], g["mae"], g["n_class_agree"]
    (3, 2, 1, ['b'], 0.275, 2)
    """
    ids = sorted(ours)
    bad_ours = [i for i in ids if finite_or_none(ours[i]) is None]
    bad_mp = [i for i in ids if i not in bad_ours and finite_or_none(mp.get(i)) is None]
    keep = [i for i in ids if i not in bad_ours and i not in bad_mp]
    x = np.array([float(mp[i]) for i in keep])  # MP
    y = np.array([float(ours[i]) for i in keep])  # ours
    conf = {"metal_both": 0, "nonmetal_both": 0, "metal_ours_only": 0, "metal_mp_only": 0}
    for a, b in zip(y, x):
        ma, mb = is_metal(a, threshold), is_metal(b, threshold)
        conf["metal_both" if ma and mb else "nonmetal_both" if not (ma or mb) else
             "metal_ours_only" if ma else "metal_mp_only"] += 1
    ins = x > threshold
    return {
        "n_total": len(ids), "n": len(keep), "ids": keep,
        "n_infinite_ours": len(bad_ours), "excluded_ours": bad_ours,
        "n_missing_mp": len(bad_mp), "excluded_mp": bad_mp,
        "mae": _round(np.mean(np.abs(y - x))) if keep else None,
        "mean_signed": _round(np.mean(y - x)) if keep else None,
        "n_mp_nonmetal": int(ins.sum()),
        "mae_mp_nonmetal": _round(np.mean(np.abs(y[ins] - x[ins]))) if ins.any() else None,
        "mean_signed_mp_nonmetal": _round(np.mean(y[ins] - x[ins])) if ins.any() else None,
        "metal_threshold_ev": threshold, "confusion": conf,
        "n_class_agree": conf["metal_both"] + conf["nonmetal_both"],
    }


def ef_parity(ours: Mapping[str, Any], mp: Mapping[str, Any],
              corrections: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Formation-energy parity (eV/atom) of the ids in ``ours`` (id -> our E_f, None when the MLFF
    gave none) against ``mp``: MAE, mean signed offset (ours - MP), median offset; with
    ``corrections`` (id -> MP2020 correction, eV/atom, <= 0 mostly) also the same after adding the
    correction to ours, and the split into corrected and uncorrected crystals.

    >>> e = ef_parity({"a": -1.0, "b": None, "c": -0.5}, {"a": -1.2, "b": -1.0, "c": -0.4}, {"a": -0.2, "c": 0.0})
    >>> e["n"], e["n_no_value"], e["mae"], e["mean_offset"], e["mae_corrected"], e["n_corrected"]
    (2, 1, 0.15, 0.05, 0.05, 1)
    """
    ids = sorted(ours)
    missing = [i for i in ids if finite_or_none(ours[i]) is None or finite_or_none(mp.get(i)) is None]
    keep = [i for i in ids if i not in missing]
    x = np.array([float(mp[i]) for i in keep])
    y = np.array([float(ours[i]) for i in keep])
    d = y - x
    out: dict[str, Any] = {
        "n_total": len(ids), "n": len(keep), "ids": keep, "n_no_value": len(missing), "excluded": missing,
        "mae": _round(np.mean(np.abs(d))) if keep else None,
        "mean_offset": _round(np.mean(d)) if keep else None,
        "median_offset": _round(np.median(d)) if keep else None,
        "rmse": _round(np.sqrt(np.mean(d ** 2))) if keep else None,
    }
    if corrections is not None and keep:
        c = np.array([float(corrections.get(i, 0.0)) for i in keep])
        dc = d + c
        hit = c != 0
        out.update({
            "mae_corrected": _round(np.mean(np.abs(dc))), "mean_offset_corrected": _round(np.mean(dc)),
            "n_corrected": int(hit.sum()),
            "mae_corrected_subset": _round(np.mean(np.abs(d[hit]))) if hit.any() else None,
            "mean_offset_corrected_subset": _round(np.mean(d[hit])) if hit.any() else None,
            "mean_correction_corrected_subset": _round(np.mean(c[hit])) if hit.any() else None,
            "mae_uncorrected_subset": _round(np.mean(np.abs(d[~hit]))) if (~hit).any() else None,
            "mean_offset_uncorrected_subset": _round(np.mean(d[~hit])) if (~hit).any() else None,
        })
    return out


def _round(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def mp2020_correction(structure: Any) -> tuple[float, list[str]]:
    """The MP2020 correction (eV/atom) pymatgen's ``MaterialsProject2020Compatibility`` gives a GGA
    (or, with a U element in an oxide/fluoride, GGA+U) entry of ``structure``, and the names of
    its parts (e.g. ``MP2020 anion correction (oxide)``); ``(0.0, [])`` for none."""
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    compat = _COMPAT.get("mp2020")
    if compat is None:
        compat = _COMPAT["mp2020"] = MaterialsProject2020Compatibility(check_potcar=False)
    comp = structure.composition
    anion = max(comp.elements, key=lambda e: e.X).symbol
    u = {el.symbol: compat.u_settings.get(anion, {}).get(el.symbol, 0) for el in comp.elements}
    u = {k: v for k, v in u.items() if v}
    entry = ComputedStructureEntry(structure, 0.0, parameters={"run_type": "GGA+U" if u else "GGA", "hubbards": u,
                                                               "software": "none"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adj = compat.get_adjustments(entry)
    return sum(a.value for a in adj) / len(structure), [a.name for a in adj]


_COMPAT: dict[str, Any] = {}


# ---- inputs --------------------------------------------------------------------------------------
def labelled_mp20(shards: Path) -> list[Any]:
    """The labelled MP-20 records in the shards (first record of an id wins, as the merge does)."""
    from dosmatgen.data.split import record_source
    from dosmatgen.data.store import DOSStore, shard_paths

    out: dict[str, Any] = {}
    for p in shard_paths(shards):
        st = DOSStore(p)
        for i, sid in enumerate(st.ids):
            if record_source(sid) == "mp20" and sid not in out:
                out[sid] = st[i]
    return [out[k] for k in sorted(out)]


def formation_energies(records: list[Any], refs_cache: Path, work: Path, fmax: float, steps: int) -> dict[str, Any]:
    """SevenNet 7net-0 E_f of ``records`` (relaxer ase, one process, one torch thread) in ``work``,
    with a private copy of ``refs_cache``."""
    from dosmatgen.evaluate.formation import FormationItem, compute_formation_energies

    refs = work / "elemental_refs_sevenn.json"
    if refs_cache.exists():
        shutil.copyfile(refs_cache, refs)
    items = [FormationItem(r.structure_id, r.structure_id, r.atomic_numbers, r.frac_coords, r.lattice)
             for r in records]
    return compute_formation_energies(items, work / "formation.json", mlff="sevenn", workers=1, fmax=fmax,
                                      steps=steps, refs_cache=refs, relaxer="ase", input_name="labelled MP-20 records",
                                      progress=True)


# ---- figures -------------------------------------------------------------------------------------
#: Errors (ours - MP) beyond this many eV are drawn as off-axis counts in the band-gap error histogram.
GAP_ERROR_RANGE: float = 2.0
#: Metal / non-metal disagreements at least this far apart (eV) are labelled with their formula.
GAP_LABEL_MIN_ERROR: float = 2.0


def _png_target(path: str | Path) -> tuple[Path, str]:
    """``(folder, stem)`` of a ``--fig-*`` path: the PNG and a PDF beside it are written."""
    path = Path(path)
    return path.parent, path.stem


def _check_summary(name: str, rows_by_id: Mapping[str, Mapping[str, Any]], summary: Mapping[str, Any],
                   fields: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """The rows of ``summary["ids"]``, each with finite ``fields``; a clear ValueError otherwise."""
    ids = summary.get("ids")
    if not isinstance(ids, list):
        raise ValueError(f"the {name} summary has no 'ids' list (the crystals it was computed over)")
    missing = [i for i in ids if i not in rows_by_id]
    if missing:
        raise ValueError(f"{len(missing)} of the {len(ids)} {name} ids have no row in 'rows' "
                         f"(first: {', '.join(map(str, missing[:3]))})")
    bad = [i for i in ids if any(finite_or_none(rows_by_id[i].get(f)) is None for f in fields)]
    if bad:
        raise ValueError(f"{len(bad)} {name} rows lack a finite {' / '.join(fields)} "
                         f"(first: {', '.join(map(str, bad[:3]))})")
    return [rows_by_id[i] for i in ids]


def _same(name: str, drawn: float, recorded: Any) -> None:
    """The number drawn (recomputed from the rows) is the one the summary records (4 decimals)."""
    if recorded is None or abs(drawn - float(recorded)) > 1e-3:
        raise ValueError(f"{name}: the rows give {drawn:.4f}, the summary records {recorded}; "
                         "rows and summary are not from one run")


def _label_groups(points: list[tuple[float, str]], min_gap: float) -> list[tuple[float, str]]:
    """Points along one axis whose positions are closer than ``min_gap`` share one label."""
    groups: list[list[tuple[float, str]]] = []
    for pos, text in sorted(points):
        if groups and pos - groups[-1][-1][0] < min_gap:
            groups[-1].append((pos, text))
        else:
            groups.append([(pos, text)])
    return [(float(np.mean([p for p, _ in g])), ",\n".join(t for _, t in g)) for g in groups]


def plot_gap(rows: list[dict[str, Any]], g: dict[str, Any], path: Path) -> list[Path]:
    """(a) our band gap against MP's, metal / non-metal disagreements marked (the largest labelled);
    (b) the distribution of ours - MP (seaborn histplot), stacked by MP's class.  Writes ``path``
    (PNG) and a PDF beside it; every number shown is recomputed from ``rows`` and checked against
    ``g``."""
    import seaborn as sns

    from dosmatgen.plots.style import COLORS, figure_style, new_figure, panel_label, save_figure

    sel = _check_summary("band-gap", {r["id"]: r for r in rows}, g, ("mp_band_gap", "gap_gpaw"))
    x = np.array([r["mp_band_gap"] for r in sel], dtype=float)  # MP
    y = np.array([r["gap_gpaw"] for r in sel], dtype=float)  # ours
    d = y - x
    t = float(g["metal_threshold_ev"])
    agree = np.array([is_metal(a, t) == is_metal(b, t) for a, b in zip(y, x)], dtype=bool)
    if len(sel):
        _same("band-gap MAE", float(np.mean(np.abs(d))), g["mae"])
    if int(agree.sum()) != g["n_class_agree"]:
        raise ValueError(f"metal / non-metal agreement: the rows give {int(agree.sum())}, the summary records "
                         f"{g['n_class_agree']}")
    blue, red = COLORS["cfg"], COLORS["classifier"]
    with figure_style():
        fig, axes = new_figure(1, 2, panel_size=(3.75, 3.5))
        ax, ax_h = axes[0]
        hi = max(1.0, float(np.max(np.concatenate([x, y]))) * 1.05) if len(x) else 1.0
        ax.plot([0, hi], [0, hi], color="0.5", lw=0.8, label="y = x")
        ax.axhline(t, color="0.5", lw=0.6, ls=":")
        ax.axvline(t, color="0.5", lw=0.6, ls=":", label=f"metal threshold {t:g} eV")
        ax.scatter(x[agree], y[agree], s=14, color=blue, alpha=0.75, edgecolor="white", lw=0.3,
                   label=f"metal / non-metal agree ({int(agree.sum())})")
        if (~agree).any():
            ax.scatter(x[~agree], y[~agree], s=20, color=red, marker="D", edgecolor="black", lw=0.3,
                       label=f"metal / non-metal disagree ({int((~agree).sum())})")
        far = [(r, a, b) for r, a, b, ok in zip(sel, x, y, agree) if not ok and abs(b - a) >= GAP_LABEL_MIN_ERROR]
        for pos, text in _label_groups([(b, r["formula"]) for r, a, b in far if a <= t], 0.25):
            ax.annotate(text, (0.0, pos), xytext=(6, 0), textcoords="offset points", fontsize=7, va="center")
        # ours metal, MP not: the points lie on the x axis; labels stacked in the empty lower right
        x_side = _label_groups([(a, r["formula"]) for r, a, b in far if a > t], 0.25)
        x_text = max([pos for pos, _ in x_side], default=0.0) + 0.08 * hi
        for k, (pos, text) in enumerate(reversed(x_side)):  # the rightmost point lowest: no leaders cross
            ax.annotate(text.replace(",\n", ", "), (pos, 0.0), xytext=(x_text, (0.09 + 0.07 * k) * hi), fontsize=7,
                        va="center", arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5, "shrinkB": 3,
                                                 "relpos": (0.0, 0.5)})
        ax.set_xlim(-0.15, hi)
        ax.set_ylim(-0.15, hi)
        ax.set_xlabel("MP band gap (eV)")
        ax.set_ylabel("our band gap, GPAW (eV)")
        ax.set_title("Parity")
        panel_label(ax, "a")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1)

        lim = GAP_ERROR_RANGE
        inside = np.abs(d) <= lim
        mp_class = np.where(x > t, "MP non-metal", "MP metal")
        sns.histplot(x=d[inside], hue=mp_class[inside], hue_order=["MP metal", "MP non-metal"],
                     palette={"MP metal": COLORS["unrelaxed"], "MP non-metal": blue},
                     bins=np.linspace(-lim, lim, 41), multiple="stack", element="bars", edgecolor="white",
                     linewidth=0.3, ax=ax_h, legend=False)
        ax_h.axvline(0.0, color="0.4", lw=0.8, ls=":")
        ax_h.set_xlim(-lim, lim)
        ax_h.set_xlabel("our gap − MP gap (eV)")
        ax_h.set_ylabel("crystals per 0.1 eV")
        ax_h.set_title("Error distribution")
        panel_label(ax_h, "b")
        from matplotlib.patches import Patch

        ins = x > t
        n_out = int((~inside).sum())
        handles = [Patch(color=COLORS["unrelaxed"]), Patch(color=blue)]
        labels = [f"MP metal: n = {int((~ins).sum())}",
                  f"MP non-metal: n = {g['n_mp_nonmetal']}, MAE = {g['mae_mp_nonmetal']:.2f} eV"
                  if g["mae_mp_nonmetal"] is not None else "MP non-metal: none"]
        ax_h.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1,
                    title=f"all {g['n']}: MAE = {g['mae']:.2f} eV, mean = {g['mean_signed']:+.2f} eV"
                          + (f"\n{n_out} beyond ±{lim:g} eV not drawn" if n_out else ""))
        caption = (f"Band gaps of {g['n_total']} labelled MP-20 crystals: ours (GPAW PBE, LCAO dzp, MP geometry) "
                   f"against MP's band_gap. {g['n_infinite_ours']} crystals with no empty band in the dzp basis "
                   f"(gap = inf) are excluded; {g['n_class_agree']}/{g['n']} agree on metal vs non-metal at "
                   f"{t:g} eV; disagreements at least {GAP_LABEL_MIN_ERROR:g} eV apart are labelled. "
                   "Small sample (cheapest cells first), not a benchmark; results/mp20_parity.json.")
        return save_figure(fig, *_png_target(path), title="MP-20 band gaps: ours (GPAW) vs the Materials Project",
                           caption=caption)


def plot_ef(rows: list[dict[str, Any]], e: dict[str, Any], path: Path) -> list[Path]:
    """(a) our MLFF formation energy against MP's, crystals with an MP2020 correction marked, with
    the correction added (hollow); (b) the distributions of ours - MP without and with the
    correction (seaborn histplot, shared bins).  Writes ``path`` (PNG) and a PDF beside it; every
    number shown is recomputed from ``rows`` and checked against ``e``."""
    import seaborn as sns

    from dosmatgen.plots.style import COLORS, figure_style, new_figure, panel_label, save_figure

    sel = _check_summary("formation-energy", {r["id"]: r for r in rows}, e,
                         ("mp_formation_energy_per_atom", "ef_mlff_relaxed", "mp2020_correction"))
    x = np.array([r["mp_formation_energy_per_atom"] for r in sel], dtype=float)
    y = np.array([r["ef_mlff_relaxed"] for r in sel], dtype=float)
    c = np.array([r["mp2020_correction"] for r in sel], dtype=float)
    d, dc = y - x, y + c - x
    hit = c != 0
    if len(sel):
        _same("formation-energy MAE", float(np.mean(np.abs(d))), e["mae"])
        _same("formation-energy mean offset", float(np.mean(d)), e["mean_offset"])
        if "mae_corrected" in e:
            _same("formation-energy MAE with MP2020", float(np.mean(np.abs(dc))), e["mae_corrected"])
    blue, orange, red = COLORS["cfg"], COLORS["unrelaxed"], COLORS["classifier"]
    with figure_style():
        fig, axes = new_figure(1, 2, panel_size=(3.75, 3.5))
        ax, ax_h = axes[0]
        lo = float(min(np.min(x), np.min(y + c), np.min(y))) - 0.2 if len(x) else -1.0
        hi = float(max(np.max(x), np.max(y), np.max(y + c))) + 0.2 if len(x) else 1.0
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, label="y = x")
        ax.scatter(x[~hit], y[~hit], s=14, color=blue, alpha=0.75, edgecolor="white", lw=0.3,
                   label=f"no MP2020 correction ({int((~hit).sum())})")
        if hit.any():
            ax.scatter(x[hit], y[hit], s=14, color=orange, marker="s", alpha=0.75, edgecolor="white", lw=0.3,
                       label=f"MP2020 anion / U correction applies ({int(hit.sum())})")
            ax.scatter(x[hit], (y + c)[hit], s=14, facecolor="none", edgecolor=red, marker="s", lw=0.6, alpha=0.75,
                       label="the same + MP2020 correction")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("MP formation energy (eV/atom)")
        ax.set_ylabel("ours, SevenNet (eV/atom)")
        ax.set_title("Parity")
        panel_label(ax, "a")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1)

        series = [(d, f"ours − MP: MAE = {e['mae']:.3f}, mean = {e['mean_offset']:+.3f}", blue, "-")]
        if "mae_corrected" in e:
            series.append((dc, f"ours + MP2020 − MP: MAE = {e['mae_corrected']:.3f}, "
                               f"mean = {e['mean_offset_corrected']:+.3f}", red, "--"))
        pooled = np.concatenate([s[0] for s in series]) if len(sel) else np.zeros(1)
        edges = np.arange(np.floor(pooled.min() / 0.025) * 0.025, pooled.max() + 0.05, 0.025)
        from matplotlib.colors import to_rgba
        from matplotlib.patches import Patch

        handles, labels = [], []
        for values, label, colour, style in series:
            sns.histplot(x=values, bins=edges, element="step", color=colour, alpha=0.2, linestyle=style,
                         linewidth=1.2, ax=ax_h)
            handles.append(Patch(facecolor=to_rgba(colour, 0.2), edgecolor=colour, linestyle=style, linewidth=1.2))
            labels.append(label)
        ax_h.axvline(0.0, color="0.4", lw=0.8, ls=":")
        ax_h.set_xlim(edges[0], edges[-1])
        ax_h.set_xlabel("ours − MP formation energy (eV/atom)")
        ax_h.set_ylabel("crystals per 0.025 eV/atom")
        ax_h.set_title("Error distribution")
        panel_label(ax_h, "b")
        ax_h.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1,
                    title=f"{e['n']} crystals; MAE and mean in eV/atom")
        caption = (f"Formation energies of {e['n_total']} labelled MP-20 crystals: ours (SevenNet 7net-0, relaxed "
                   "from MP's geometry, elemental references of the same MLFF) against MP's "
                   "formation_energy_per_atom, which carries MP's corrections; ours carries none. "
                   f"{e.get('n_corrected', 0)} crystals get an MP2020 anion / GGA+U correction from pymatgen "
                   "(hollow: ours with it added). Small sample (cheapest cells first), not a benchmark; "
                   "results/mp20_parity.json.")
        return save_figure(fig, *_png_target(path),
                           title="MP-20 formation energies: ours (SevenNet) vs the Materials Project", caption=caption)


def redraw(json_path: str | Path, fig_gap: str | Path, fig_ef: str | Path) -> list[Path]:
    """Draw both figures again from a result JSON this script wrote (its ``rows``, ``gap`` and
    ``formation``), computing nothing; the E_f figure only when the JSON has formation energies."""
    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{json_path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        raise ValueError(f"{json_path}: no per-crystal 'rows' (a result JSON of mp20_parity.py has them)")
    if not isinstance(data.get("gap"), dict):
        raise ValueError(f"{json_path}: no 'gap' summary")
    rows = [r for r in data["rows"] if isinstance(r, dict) and "id" in r]
    out = plot_gap(rows, data["gap"], Path(fig_gap))
    if isinstance(data.get("formation"), dict):
        out += plot_ef(rows, data["formation"], Path(fig_ef))
    return out


# ---- main ----------------------------------------------------------------------------------------
def _rel(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it or in a folder beside it (``../``)."""
    p = Path(path).resolve()
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        try:
            return prefix + str(p.relative_to(base))
        except ValueError:
            continue
    return str(path)


def main(argv: Iterable[str] | None = None) -> int:
    if str(ROOT) not in sys.path:  # the builder's MP-20 source is in dev_scripts/ at the repository root
        sys.path.append(str(ROOT))
    from dev_scripts.builtin import mp20
    from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS
    from dosmatgen.io import atomic_save_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", default=str(ROOT / "resources" / "builtin"))
    ap.add_argument("--pool", default=str(mp20.DEFAULT_POOL))
    ap.add_argument("--out-json", default=str(ROOT / "results" / "mp20_parity.json"))
    ap.add_argument("--fig-gap", default=str(ROOT / "figures" / "mp20_parity_gap.png"))
    ap.add_argument("--fig-ef", default=str(ROOT / "figures" / "mp20_parity_ef.png"))
    ap.add_argument("--refs-cache", default=str(DEFAULT_REFS),
                    help="SevenNet elemental references to start from (copied; the copy takes any new element)")
    ap.add_argument("--work", default=None, help="keep the formation run here (default: a temporary folder)")
    ap.add_argument("--fmax", type=float, default=DEFAULT_FMAX)
    ap.add_argument("--steps", type=int, default=DEFAULT_RELAX_STEPS)
    ap.add_argument("--metal-threshold", type=float, default=METAL_THRESHOLD)
    ap.add_argument("--no-formation", action="store_true", help="band gaps only (no MLFF)")
    ap.add_argument("--redraw-from", metavar="JSON", default=None,
                    help="only draw the two figures again from this result JSON (e.g. results/mp20_parity.json); "
                         "computes nothing, writes nothing else")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.redraw_from:
        try:
            paths = redraw(args.redraw_from, args.fig_gap, args.fig_ef)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("-> " + ", ".join(_rel(p) for p in paths))
        return 0
    t0 = time.time()

    records = labelled_mp20(Path(args.shards))
    if not records:
        print(f"no labelled MP-20 records in {args.shards}", file=sys.stderr)
        return 2
    pool = {row.get("material_id"): row for row in mp20.read_pool(args.pool) if isinstance(row, dict)}
    rows = []
    for r in records:
        p = r.provenance
        row = pool[p["material_id"]]
        s = r.to_structure()
        corr, names = mp2020_correction(s)
        rows.append({"id": r.structure_id, "material_id": p["material_id"], "formula": s.composition.reduced_formula,
                     "natoms": r.num_atoms, "elements": sorted({el.symbol for el in s.composition.elements}),
                     "spin_polarised": p.get("spin_polarised"),
                     "gap_gpaw": finite_or_none(p.get("gap")),
                     "gap_gpaw_infinite": finite_or_none(p.get("gap")) is None,
                     "mp_band_gap": finite_or_none(row.get("band_gap")),
                     "mp_formation_energy_per_atom": finite_or_none(row.get("formation_energy_per_atom")),
                     "mp_e_above_hull": finite_or_none(row.get("e_above_hull")),
                     "mp2020_correction": round(corr, 4), "mp2020_parts": names})
        if finite_or_none(p.get("mp_band_gap")) != finite_or_none(row.get("band_gap")):
            raise SystemExit(f"{r.structure_id}: provenance mp_band_gap disagrees with the pool")
    # our gap as recorded (inf kept) for the parity function, which counts and excludes it
    g = gap_parity({r.structure_id: r.provenance.get("gap") for r in records},
                   {row["id"]: row["mp_band_gap"] for row in rows}, args.metal_threshold)

    formation: dict[str, Any] | None = None
    e = None
    if not args.no_formation:
        with tempfile.TemporaryDirectory(prefix="mp20_parity_") as tmp:
            work = Path(args.work) if args.work else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            if args.work and (work / "formation.json").exists():
                raise SystemExit(f"{work} holds an earlier formation run; give an empty --work")
            formation = formation_energies(records, Path(args.refs_cache), work, args.fmax, args.steps)
        by_id = {fr["id"]: fr for fr in formation["rows"]}
        for row in rows:
            fr = by_id[row["id"]]
            row.update({"ef_mlff_relaxed": fr["ef_relaxed"] if fr["status"] == "ok" else None,
                        "ef_mlff_unrelaxed": fr["ef_unrelaxed"], "mlff_status": fr["status"],
                        "mlff_relax_status": fr["relax_status"], "mlff_volume_ratio": fr["volume_ratio"],
                        "mlff_ref_fallback": fr["ref_fallback"]})
        mp_ef = {row["id"]: row["mp_formation_energy_per_atom"] for row in rows}
        corr = {row["id"]: row["mp2020_correction"] for row in rows}
        e = ef_parity({row["id"]: row["ef_mlff_relaxed"] for row in rows}, mp_ef, corr)
        e["unrelaxed"] = ef_parity({row["id"]: row["ef_mlff_unrelaxed"] for row in rows}, mp_ef, corr)
        e["unrelaxed"].pop("ids")
        e["corrected_anions"] = sorted({n.split("(")[-1].rstrip(")") for row in rows for n in row["mp2020_parts"]
                                        if "anion" in n})
        e["u_mixing_elements"] = sorted({n.split("(")[-1].rstrip(")") for row in rows for n in row["mp2020_parts"]
                                         if "GGA+U" in n})
        e["corrected_formulas"] = sorted({row["formula"] for row in rows if row["mp2020_correction"] != 0})

    n = len(records)
    ledger = Path(args.shards) / "ledger-mp20.jsonl"
    out = {
        "what": f"parity of the labelled MP-20 crystals against MP's own numbers (small, {n} structures)",
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "experiments/mp20_parity/mp20_parity.py",
                                                    *(list(argv) if argv is not None else sys.argv[1:])]),
        "n_structures": n, "sample": "the cheapest MP-20 cells labelled so far (build-builtin --source mp20 labels "
                                     "cheapest first), so small cells dominate; not a random sample of MP-20",
        "atoms_per_cell": {str(k): int(v)
                           for k, v in zip(*np.unique([r.num_atoms for r in records], return_counts=True))},
        "shards": _rel(args.shards), "pool": _rel(args.pool),
        "ledger_mp20_lines": (sum(1 for ln in ledger.read_text().splitlines() if ln.strip())
                              if ledger.exists() else None),
        "protocol_gap": "our gap: smallest eigenvalue gap across E_F on the DOS k mesh (GPAW PBE LCAO dzp, "
                        "MP geometry, unrelaxed); MP: band_gap of the pool (MP's GGA/GGA+U); inf gaps (no empty "
                        "band in the dzp basis) counted and excluded",
        "protocol_formation": None if e is None else {
            "mlff": "sevenn (SevenNet 7net-0)", "relaxer": "ase (FIRE + FrechetCellFilter)", "fmax": args.fmax,
            "max_steps": args.steps, "start": "MP geometry",
            "references": "elemental crystals of ase dcdft relaxed with the same MLFF "
                          f"(copy of {_rel(args.refs_cache)})",
            "mp": "formation_energy_per_atom of the pool (MP, with MP's corrections)",
            "mp2020_correction": "what pymatgen's MaterialsProject2020Compatibility adds to a GGA(+U) entry of the "
                                 "structure, eV/atom; a diagnostic (the pool does not say which scheme MP-20 carries)"},
        "gap": g, "formation": e,
        "references": None if formation is None else formation["references"],
        "mlff_status_counts": None if formation is None else formation["status_counts"],
        "rows": rows,
        "seconds": round(time.time() - t0, 1), "python": platform.python_version(),
    }
    atomic_save_json(args.out_json, out)
    plot_gap(rows, g, Path(args.fig_gap))
    if e is not None:
        plot_ef(rows, e, Path(args.fig_ef))
    print(f"MP-20 parity (small, {n} structures): gap N={g['n']} MAE={g['mae']} eV "
          f"(inf gaps excluded: {g['n_infinite_ours']}; metal/non-metal agree {g['n_class_agree']}/{g['n']})")
    if e is not None:
        print(f"  E_f N={e['n']} MAE={e['mae']} eV/atom, mean offset (ours - MP) {e['mean_offset']:+} eV/atom; "
              f"+MP2020 correction: MAE={e.get('mae_corrected')} offset {e.get('mean_offset_corrected')}")
    print(f"-> {args.out_json}, {args.fig_gap}" + ("" if e is None else f", {args.fig_ef}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
