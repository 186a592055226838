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

Written: ``--out-json`` (every number, the per-crystal rows, the exact command) and two parity
figures.  The sample is small (the labelling runs in the background, cheapest cells first) and
the JSON says so: it is a smoke check of the protocol on real crystals, not a benchmark.

    .venv/bin/python experiments/mp20_parity/mp20_parity.py [--shards resources/builtin] [--pool resources/mp20/mp20_pool.json]
        [--out-json results/mp20_parity.json] [--fig-gap figures/mp20_parity_gap.png]
        [--fig-ef figures/mp20_parity_ef.png] [--steps 200] [--fmax 0.05] [--no-formation]
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
    from dosmatgen.data.builtin import shard_paths
    from dosmatgen.data.split import record_source
    from dosmatgen.data.store import DOSStore

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
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_gap(rows: list[dict[str, Any]], g: dict[str, Any], path: Path) -> None:
    from dosmatgen.io import atomic_temp_path

    plt = _pyplot()
    keep = set(g["ids"])
    pts = [(r["mp_band_gap"], r["gap_gpaw"], r) for r in rows if r["id"] in keep]
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    t = g["metal_threshold_ev"]
    agree = np.array([is_metal(a, t) == is_metal(b, t) for a, b in zip(y, x)], dtype=bool)
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    hi = max(1.0, float(np.max(np.concatenate([x, y]))) * 1.05) if len(x) else 1.0
    ax.plot([0, hi], [0, hi], color="grey", lw=0.8, label="y = x")
    ax.axhline(t, color="grey", lw=0.5, ls=":")
    ax.axvline(t, color="grey", lw=0.5, ls=":", label=f"metal threshold {t:g} eV")
    ax.scatter(x[agree], y[agree], s=22, color="tab:blue", edgecolor="k", lw=0.4,
               label=f"N = {g['n']}, MAE = {g['mae']:.2f} eV\n(MP non-metals: {g['n_mp_nonmetal']}, "
                     f"MAE = {g['mae_mp_nonmetal']:.2f} eV)" if g["mae_mp_nonmetal"] is not None else
                     f"N = {g['n']}, MAE = {g['mae']:.2f} eV")
    if (~agree).any():
        ax.scatter(x[~agree], y[~agree], s=30, color="tab:red", marker="D", edgecolor="k", lw=0.4,
                   label=f"metal / non-metal disagree ({int((~agree).sum())})")
        for (a, b, r), bad in zip(pts, ~agree):
            if bad:
                ax.annotate(r["formula"], (a, b), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xlim(-0.1, hi)
    ax.set_ylim(-0.1, hi)
    ax.set_xlabel("MP band gap (eV)")
    ax.set_ylabel("our GPAW band gap (eV, PBE LCAO dzp)")
    ax.set_title(f"MP-20 band gaps (small, {g['n_total']} structures)\n{g['n_infinite_ours']} with no empty band "
                 f"(gap = inf) excluded; {g['n_class_agree']}/{g['n']} metal/non-metal agree", fontsize=8.5)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    with atomic_temp_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_ef(rows: list[dict[str, Any]], e: dict[str, Any], path: Path) -> None:
    from dosmatgen.io import atomic_temp_path

    plt = _pyplot()
    keep = set(e["ids"])
    sel = [r for r in rows if r["id"] in keep]
    x = np.array([r["mp_formation_energy_per_atom"] for r in sel])
    y = np.array([r["ef_mlff_relaxed"] for r in sel])
    c = np.array([r["mp2020_correction"] for r in sel])
    hit = c != 0
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    lo = float(min(np.min(x), np.min(y + c), np.min(y))) - 0.2 if len(x) else -1
    hi = float(max(np.max(x), np.max(y))) + 0.2 if len(x) else 1
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, label="y = x")
    ax.scatter(x[~hit], y[~hit], s=22, color="tab:blue", edgecolor="k", lw=0.4,
               label=f"no MP2020 correction ({int((~hit).sum())})")
    if hit.any():
        ax.scatter(x[hit], y[hit], s=26, color="tab:orange", marker="s", edgecolor="k", lw=0.4,
                   label=f"MP2020 anion / U correction applies ({int(hit.sum())})")
        ax.scatter(x[hit], (y + c)[hit], s=22, facecolor="none", edgecolor="tab:orange", marker="s", lw=0.8,
                   label="  the same + MP2020 correction")
        for xi, y0, y1 in zip(x[hit], y[hit], (y + c)[hit]):
            ax.plot([xi, xi], [y0, y1], color="tab:orange", lw=0.5)
    text = f"N = {e['n']}, MAE = {e['mae']:.3f} eV/atom\nmean offset (ours - MP) = {e['mean_offset']:+.3f} eV/atom"
    if e.get("n_corrected"):
        text += (f"\ncorrected {e['n_corrected']}: offset {e['mean_offset_corrected_subset']:+.3f} eV/atom"
                 f"\nall + MP2020 correction: MAE = {e['mae_corrected']:.3f} eV/atom")
    ax.plot([], [], " ", label=text)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("MP formation energy (eV/atom)")
    ax.set_ylabel("our formation energy, SevenNet 7net-0 relaxed (eV/atom)")
    ax.set_title(f"MP-20 formation energies (small, {e['n_total']} structures)", fontsize=8.5)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    with atomic_temp_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)


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
    from dosmatgen.data import mp20
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
    args = ap.parse_args(list(argv) if argv is not None else None)
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
