"""Site DOS of real Materials Project documents (our MP recipe) beside our GPAW engine's, Si and Fe.

For Si (mp-149, DOS task mp-1686587) and bcc Fe (mp-13, DOS task mp-1671247), read the real MP
``CompleteDos`` documents in ``tests/fixtures/mp_documents`` (copied from emmet's test data), turn them
into site DOS with the project's MP recipe (:mod:`dosmatgen.dos.mp_convert`: s+p+d projections,
spins summed, Gaussian smoothing of sigma = 7 points of MP's 2001-point energy grid, regridded onto
the 400-point grid in [-10, 10] eV about E_F), run our GPAW engine
(:class:`dosmatgen.dos.gpaw_engine.GPAWSiteDOSEngine`, default protocol: PBE, LCAO dzp, Mulliken
projections, Gaussian sigma = 0.15 eV, Fe spin-polarised) on the structure of the same MP DOS
calculation, and plot both curves per element on the same grid.

Written: a figure (PNG and a PDF beside it) with one panel per element, each giving the integral of
each curve below E_F, and a JSON with the curves, those integrals (electrons per site in
[-10, 0] eV), the mean absolute (L1) difference and the cosine similarity of the two curves, the
protocol of each source, diagnostics (MP total-DOS integral, magnetic moments, band edges, GPAW
curve re-broadened to MP's effective width) and the exact command line.

GPAW results are cached in ``--gpaw-cache`` (one JSON per structure, keyed by the structure and the
engine protocol), so a rerun only redraws; ``--recompute`` ignores the cache. GPAW runs with one
thread (the engine sets OMP_NUM_THREADS=1 and friends in its worker) and takes a few minutes for
both cells on one core.

    .venv/bin/python experiments/mp_vs_gpaw/mp_vs_gpaw_figure.py [--out-figure figures/mp_vs_gpaw_Si_Fe.png]
        [--out-json results/mp_vs_gpaw_Si_Fe.json] [--gpaw-cache work/mp_vs_gpaw/]
    .venv/bin/python experiments/mp_vs_gpaw/mp_vs_gpaw_figure.py --redraw-from results/mp_vs_gpaw_Si_Fe.json

``--redraw-from`` draws the figure again from a result JSON (no GPAW, nothing else written); the
figure is drawn from that document only (:func:`draw`), in the package's figure style
(:mod:`dosmatgen.plots.style`).  JSONs written since the figure moved to that style also hold the
re-broadened GPAW curve (``curves_site0.gpaw_rebroadened_to_mp_sigma``); from an older JSON the
panel title gives only its numbers.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.dos.gpaw_engine import GPAWSiteDOSEngine
from dosmatgen.dos.grid import ENERGY_GRID
from dosmatgen.dos.mp_convert import (DEFAULT_ORBITALS, MP_GRID_POINTS, SMOOTH_SIGMA_POINTS,
                                      record_from_complete_dos, smooth_and_regrid)
from dosmatgen.io import atomic_save_json
from dosmatgen.threads import THREAD_ENV

MP_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "mp_documents"
#: GPAW's wide-window output (eV about its reference) used only for the re-broadened diagnostic.
WIDE_GRID: tuple[float, float, int] = (-25.0, 25.0, 1001)


# ---- inputs ------------------------------------------------------------------------------------
def _load_gz_json(path: Path) -> Any:
    with gzip.open(path, "rt") as fh:
        return json.load(fh)


def load_mp_documents(mp_dir: Path) -> list[dict[str, Any]]:
    """The two cases: label, mp id, DOS task id, CompleteDos, notes."""
    from pymatgen.core import Structure
    from pymatgen.electronic_structure.dos import CompleteDos

    objs = _load_gz_json(mp_dir / "emmet_es_dos_objs.json.gz")
    si_doc = next(o for o in objs if o["task_id"] == "mp-1686587")
    si = CompleteDos.from_dict(si_doc["data"])
    fe = CompleteDos.from_dict(_load_gz_json(mp_dir / "emmet_Fe_dos.json.gz"))
    fe_material = Structure.from_dict(_load_gz_json(mp_dir / "emmet_Fe_structure.json.gz"))
    fe_note = {
        "structure_used": "the structure stored in the CompleteDos (the DOS calculation's own cell)",
        "material_structure_file": "emmet_Fe_structure.json.gz",
        "material_structure_abc": [round(x, 6) for x in fe_material.lattice.abc],
        "dos_structure_abc": [round(x, 6) for x in fe.structure.lattice.abc],
        "material_structure_magmom": [float(m) for m in fe_material.site_properties.get("magmom", [])],
    }
    return [
        {"label": "Si", "mp_id": "mp-149", "dos_task_id": si_doc["task_id"],
         "source_file": "emmet_es_dos_objs.json.gz (task mp-1686587)", "cdos": si,
         "notes": {"structure_used": "the structure stored in the CompleteDos"}},
        {"label": "Fe", "mp_id": "mp-13", "dos_task_id": "mp-1671247", "source_file": "emmet_Fe_dos.json.gz",
         "cdos": fe, "notes": fe_note},
    ]


# ---- numbers -----------------------------------------------------------------------------------
def integral_below_ef(grid: np.ndarray, dos: np.ndarray) -> float:
    """∫_{grid[0]}^{0} dos dE (trapezoid over the grid points with E < 0, closed at E = 0 with the
    linearly interpolated value: 0 eV lies between two points of the 400-point grid)."""
    below = grid < 0.0
    e = np.append(grid[below], 0.0)
    d = np.append(dos[below], np.interp(0.0, grid, dos))
    return float(np.sum(0.5 * (d[1:] + d[:-1]) * np.diff(e)))


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean |a - b| over the grid points (states/eV/site) and the cosine similarity of a and b."""
    l1 = float(np.mean(np.abs(a - b)))
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return {"l1_mean_abs_diff": l1, "cosine_similarity": cos}


def mp_total_per_site(cdos: Any) -> np.ndarray:
    """MP's total DOS (spins summed) / number of sites through the same recipe smoothing; VASP's
    site projections only count charge inside the projection spheres, the total counts it all."""
    e = np.asarray(cdos.energies, dtype=float) - float(cdos.efermi)
    tot = np.asarray(cdos.get_densities(), dtype=float) / len(cdos.structure)
    return smooth_and_regrid(e, tot, SMOOTH_SIGMA_POINTS, ENERGY_GRID)


def mp_diagnostics(cdos: Any) -> dict[str, Any]:
    from pymatgen.electronic_structure.core import Spin

    e = np.asarray(cdos.energies, dtype=float)
    out: dict[str, Any] = {"efermi_eV": float(cdos.efermi), "energy_points": int(e.size),
                           "energy_range_eV": [float(e[0]), float(e[-1])],
                           "energy_step_eV": float(np.mean(np.diff(e))),
                           "smoothing_sigma_eV": float(SMOOTH_SIGMA_POINTS * np.mean(np.diff(e))),
                           "spin_polarised": len(cdos.densities) == 2}
    try:
        cbm, vbm = cdos.get_cbm_vbm()
        out.update(vbm_eV=float(vbm), cbm_eV=float(cbm), gap_eV=float(cdos.get_gap()),
                   efermi_minus_vbm_eV=float(cdos.efermi - vbm))
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        out["band_edges_error"] = str(exc)
    if out["spin_polarised"]:
        occ = e <= cdos.efermi
        de = np.gradient(e)
        up = float(np.sum(np.asarray(cdos.densities[Spin.up])[occ] * de[occ]))
        dn = float(np.sum(np.asarray(cdos.densities[Spin.down])[occ] * de[occ]))
        out["magmom_from_total_dos_muB"] = up - dn
    return out


# ---- GPAW with a cache -------------------------------------------------------------------------
def cache_key(record: CrystalRecord, engine: GPAWSiteDOSEngine) -> str:
    blob = json.dumps({"job": engine.job(record), "protocol": engine.protocol(), "wide": engine.wide_grid},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def gpaw_result(record: CrystalRecord, engine: GPAWSiteDOSEngine, cache_dir: Path, recompute: bool,
                log: Any) -> dict[str, Any]:
    """The engine's result for ``record`` as a JSON-able dict, from the cache when it is there."""
    path = cache_dir / f"{record.structure_id}_{cache_key(record, engine)}.json"
    if path.exists() and not recompute:
        print(f"[gpaw] {record.structure_id}: cached result {path}", file=log, flush=True)
        out = json.loads(path.read_text())
        out["from_cache"] = True
        return out
    print(f"[gpaw] {record.structure_id}: running GPAW ({record.num_atoms} atoms) ...", file=log, flush=True)
    t0 = time.time()
    res = engine.compute(record)
    extra = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in res.extra.items()}
    out = {"structure_id": record.structure_id, "dos": res.dos.tolist(), "fermi_eV": res.fermi,
           "vbm_eV": res.vbm, "cbm_eV": res.cbm, "gap_eV": res.gap, "reference_eV": res.reference,
           "spin_polarised": res.spin_polarised, "magmom_muB": res.magmom,
           "weight_max_dev": res.weight_max_dev, "seconds": res.seconds, "protocol": res.protocol,
           "extra": extra, "wall_s": time.time() - t0}
    atomic_save_json(path, out)
    print(f"[gpaw] {record.structure_id}: done in {res.seconds:.0f} s -> {path}", file=log, flush=True)
    out["from_cache"] = False
    return out


def rebroadened(gp: dict[str, Any], sigma_target_eV: float, gpaw_sigma: float) -> np.ndarray | None:
    """GPAW's site-0 DOS re-broadened to a total Gaussian width ``sigma_target_eV`` (extra Gaussian of
    sqrt(target² - gpaw_sigma²) on its wide grid), then put on ENERGY_GRID; None without a wide grid."""
    from scipy.ndimage import gaussian_filter1d

    wg, wd = gp["extra"].get("wide_grid"), gp["extra"].get("wide_dos")
    if wg is None or wd is None or sigma_target_eV <= gpaw_sigma:
        return None
    wg, wd = np.asarray(wg, dtype=float), np.asarray(wd, dtype=float)[0]
    extra = math.sqrt(sigma_target_eV ** 2 - gpaw_sigma ** 2) / float(wg[1] - wg[0])
    return np.interp(ENERGY_GRID, wg, gaussian_filter1d(wd, extra, mode="constant"), left=0.0, right=0.0)


# ---- figure ------------------------------------------------------------------------------------
def _case_numbers(case: dict[str, Any]) -> dict[str, Any]:
    """What the figure shows of one case of the result JSON; a clear ValueError when a part is missing."""
    label = case.get("label", "?")
    try:
        curves, s0, mp, gp = case["curves_site0"], case["site0"], case["mp"], case["gpaw"]
        out = {"mp_dos": np.asarray(curves["mp_recipe"], dtype=float),
               "gpaw_dos": np.asarray(curves["gpaw"], dtype=float),
               "mp_total": np.asarray(curves["mp_total_dos_per_site"], dtype=float),
               "rebroadened": (np.asarray(curves["gpaw_rebroadened_to_mp_sigma"], dtype=float)
                               if curves.get("gpaw_rebroadened_to_mp_sigma") is not None else None),
               "int_mp": float(s0["integral_below_EF_mp"]), "int_gpaw": float(s0["integral_below_EF_gpaw"]),
               "l1": float(s0["l1_mean_abs_diff"]), "cos": float(s0["cosine_similarity"]),
               "mp_sigma": float(mp["diagnostics"]["smoothing_sigma_eV"]),
               "int_mp_total": float(mp["total_dos_per_site_integral_below_EF"]),
               "mp_ef_minus_vbm": mp["diagnostics"].get("efermi_minus_vbm_eV"),
               "gpaw_spin": bool(gp["spin_polarised"]), "gpaw_ref_is_vbm": gp["reference"] == "VBM",
               "reb": case.get("gpaw_rebroadened_to_mp_sigma_site0"),
               "title": f"{label} {case['mp_id']} (DOS task {case['dos_task_id']}), site 0"}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"case {label}: the result JSON lacks {exc} (a JSON of mp_vs_gpaw_figure.py has it)") from None
    return out


def draw(doc: dict[str, Any], out_png: Path) -> list[Path]:
    """One panel per case of the result document ``doc`` (what ``--out-json`` holds): the MP-recipe
    and GPAW site-0 DOS, MP's total DOS per site and, when the document has it, GPAW re-broadened to
    MP's width; every number from ``doc``.  Writes ``out_png`` and a PDF beside it."""
    from dosmatgen.plots.style import COLORS, figure_style, new_figure, panel_label, save_figure

    cases = doc.get("cases") if isinstance(doc, dict) else None
    if not cases:
        raise ValueError("the result JSON has no 'cases'")
    eg = doc.get("energy_grid") or {}
    grid = np.linspace(eg.get("min_eV", ENERGY_GRID[0]), eg.get("max_eV", ENERGY_GRID[-1]),
                       int(eg.get("points", ENERGY_GRID.size)))
    sigma_gpaw = float((doc.get("protocols") or {}).get("gpaw_engine", {}).get("sigma", 0.15))
    mp_colour, gpaw_colour = COLORS["cfg"], COLORS["dft"]
    with figure_style():
        fig, axes = new_figure(len(cases), 1, panel_size=(7.5, 2.7))
        for i, (ax, case) in enumerate(zip(axes[:, 0], cases)):
            c = _case_numbers(case)
            if any(v.size != grid.size for v in (c["mp_dos"], c["gpaw_dos"], c["mp_total"])):
                raise ValueError(f"case {case.get('label')}: curves do not have the {grid.size} grid points")
            ax.plot(grid, c["mp_dos"], color=mp_colour, lw=1.6,
                    label=f"MP recipe (VASP, σ {c['mp_sigma']:.2f} eV): {c['int_mp']:.2f} e")
            ax.plot(grid, c["gpaw_dos"], color=gpaw_colour, lw=1.2,
                    label=f"GPAW (σ {sigma_gpaw:.2f} eV{', spin-pol.' if c['gpaw_spin'] else ''}): "
                          f"{c['int_gpaw']:.2f} e")
            ax.plot(grid, c["mp_total"], color="0.35", lw=1.0, ls=":",
                    label=f"MP total DOS / site (diagnostic): {c['int_mp_total']:.2f} e")
            title = f"{c['title']}: L1 = {c['l1']:.3f} states/eV/site, cosine = {c['cos']:.3f}"
            if c["rebroadened"] is not None:
                ax.plot(grid, c["rebroadened"], color=gpaw_colour, lw=1.0, ls="--", alpha=0.8,
                        label=f"GPAW re-broadened to σ {c['mp_sigma']:.2f} eV (diagnostic)"
                              + (f": {c['reb']['integral_below_EF']:.2f} e" if c["reb"] else ""))
            elif c["reb"]:  # the curve is not in the JSON, its numbers are
                title += (f"\n(GPAW re-broadened to σ {c['mp_sigma']:.2f} eV: cosine "
                          f"{c['reb']['cosine_similarity']:.3f}, {c['reb']['integral_below_EF']:.2f} e below E_F; "
                          "curve not stored)")
            ax.axvline(0.0, color="0.4", lw=0.8, ls=":")
            ax.set_xlim(grid[0], grid[-1])
            top = max(np.max(c["mp_dos"]), np.max(c["gpaw_dos"]), np.max(c["mp_total"]))
            ax.set_ylim(0.0, 1.55 * top)
            xlabel = "E − E_F (eV)"
            if c["gpaw_ref_is_vbm"] and c["mp_ef_minus_vbm"] is not None:
                xlabel += f"   (GPAW zero: its VBM; MP's E_F = VBM + {c['mp_ef_minus_vbm']:.3f} eV)"
            ax.set_xlabel(xlabel)
            ax.set_ylabel("site DOS (states/eV/site)")
            ax.set_title(title)
            panel_label(ax, "abcdefgh"[i])
            ax.legend(loc="upper left", ncols=2, title="electrons per site below E_F", alignment="left",
                      columnspacing=1.0, handlelength=1.8)
        caption = ("Site DOS of site 0 on the 400-point grid in [-10, 10] eV: the Materials Project's own "
                   "CompleteDos converted by our MP recipe (s+p+d projections, spins summed, Gaussian "
                   "smoothing of 7 points of MP's grid) and our GPAW engine (PBE, LCAO dzp, Mulliken "
                   "projections) on the same structure. Legends give the electrons per site below E_F "
                   "([-10, 0] eV). results/mp_vs_gpaw_Si_Fe.json.")
        return save_figure(fig, out_png.parent, out_png.stem,
                           title="Site DOS: our MP recipe on real MP documents vs our GPAW engine (Si, Fe)",
                           caption=caption)


# ---- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mp-dir", default=str(MP_DIR), help="folder of the real MP documents (default %(default)s)")
    p.add_argument("--out-figure", default="figures/mp_vs_gpaw_Si_Fe.png",
                   help="PNG to write; a PDF with the same stem is written beside it (default %(default)s)")
    p.add_argument("--out-json", default="results/mp_vs_gpaw_Si_Fe.json",
                   help="curves, integrals, L1, cosine, protocols, command (default %(default)s)")
    p.add_argument("--gpaw-cache", default="work/mp_vs_gpaw/",
                   help="folder of finished GPAW results reused by a rerun (default %(default)s)")
    p.add_argument("--recompute", action="store_true", help="run GPAW even when a cached result exists")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="GPAW timeout per structure (default %(default)s)")
    p.add_argument("--gpaw-python", default="/usr/bin/python3", help="interpreter with GPAW (default %(default)s)")
    p.add_argument("--redraw-from", metavar="JSON", default=None,
                   help="only draw the figure again from this result JSON (e.g. results/mp_vs_gpaw_Si_Fe.json) "
                        "into --out-figure; no GPAW, nothing else written")
    args = p.parse_args(argv)
    if args.redraw_from:
        try:
            doc = json.loads(Path(args.redraw_from).read_text(encoding="utf-8"))
            paths = draw(doc, Path(args.out_figure))
        except (OSError, ValueError) as exc:
            print(f"error: {args.redraw_from}: {exc}", file=sys.stderr)
            return 2
        print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
        return 0
    os.environ.update({k: "1" for k in THREAD_ENV})
    t_start = time.time()
    log = sys.stderr

    ok, version = GPAWSiteDOSEngine.available(args.gpaw_python)
    if not ok:
        print(f"error: GPAW is not available: {version}", file=sys.stderr)
        return 2
    engine = GPAWSiteDOSEngine(timeout_s=args.timeout_s, python=args.gpaw_python, wide_grid=WIDE_GRID)
    cases = load_mp_documents(Path(args.mp_dir))
    results = []
    for c in cases:
        cdos = c["cdos"]
        rec = record_from_complete_dos(cdos, c["mp_id"], provenance={"task_id": c["dos_task_id"]})
        mp_dos = np.asarray(rec.dos, dtype=float)
        gp = gpaw_result(CrystalRecord(rec.structure_id, rec.atomic_numbers, rec.frac_coords, rec.lattice),
                         engine, Path(args.gpaw_cache), args.recompute, log)
        gp_dos = np.asarray(gp["dos"], dtype=float)
        mpd = mp_diagnostics(cdos)
        total = mp_total_per_site(cdos)
        c["mp_dos"], c["gpaw_dos"], c["mp_total"] = mp_dos[0], gp_dos[0], total
        c["gpaw_rebroadened"] = rebroadened(gp, mpd["smoothing_sigma_eV"], engine.sigma)
        sites = []
        for i in range(rec.num_atoms):
            sites.append({"site": i, "species": cdos.structure[i].species_string,
                          "integral_below_EF_mp": integral_below_ef(ENERGY_GRID, mp_dos[i]),
                          "integral_below_EF_gpaw": integral_below_ef(ENERGY_GRID, gp_dos[i]),
                          "integral_whole_window_mp": float(np.trapezoid(mp_dos[i], ENERGY_GRID)),
                          "integral_whole_window_gpaw": float(np.trapezoid(gp_dos[i], ENERGY_GRID)),
                          **compare(mp_dos[i], gp_dos[i])})
        s0 = sites[0]
        reb = None
        if c["gpaw_rebroadened"] is not None:
            reb = dict(compare(mp_dos[0], c["gpaw_rebroadened"]),
                       integral_below_EF=integral_below_ef(ENERGY_GRID, c["gpaw_rebroadened"]),
                       sigma_total_eV=mpd["smoothing_sigma_eV"])
        results.append({
            "label": c["label"], "mp_id": c["mp_id"], "dos_task_id": c["dos_task_id"],
            "source_file": c["source_file"], "formula": rec.formula, "num_sites": rec.num_atoms,
            "lattice_abc_A": [float(x) for x in cdos.structure.lattice.abc], "notes": c["notes"],
            "site0": s0, "sites": sites,
            "mp": {"diagnostics": mpd,
                   "total_dos_per_site_integral_below_EF": integral_below_ef(ENERGY_GRID, total),
                   "total_dos_per_site_note": "MP total DOS (spins summed) / n_sites through the same smoothing; "
                                              "the site projections count only charge inside VASP's "
                                              "projection spheres, the total counts all of it"},
            "gpaw": {k: gp[k] for k in ("fermi_eV", "vbm_eV", "cbm_eV", "gap_eV", "reference_eV",
                                        "spin_polarised", "magmom_muB", "weight_max_dev", "seconds",
                                        "from_cache")}
                    | {"reference": "VBM" if gp["reference_eV"] != gp["fermi_eV"] else "E_F",
                       "n_electrons_cell": gp["extra"].get("n_electrons"),
                       "kpts_scf": gp["extra"].get("kpts_scf"), "kpts_dos": gp["extra"].get("kpts_dos"),
                       "n_ibz_dos": gp["extra"].get("n_ibz_dos"), "gpaw_version": gp["extra"].get("gpaw_version"),
                       "scf_attempts": gp["extra"].get("attempts")},
            "gpaw_rebroadened_to_mp_sigma_site0": reb,
            "curves_site0": {"mp_recipe": mp_dos[0].tolist(), "gpaw": gp_dos[0].tolist(),
                             "mp_total_dos_per_site": total.tolist(),
                             "gpaw_rebroadened_to_mp_sigma": (None if c["gpaw_rebroadened"] is None
                                                              else c["gpaw_rebroadened"].tolist())},
        })
        print(f"[{c['label']}] ∫below E_F: MP {s0['integral_below_EF_mp']:.3f}  GPAW "
              f"{s0['integral_below_EF_gpaw']:.3f}  L1 {s0['l1_mean_abs_diff']:.4f}  cos "
              f"{s0['cosine_similarity']:.4f}  GPAW spin-polarised {gp['spin_polarised']}", file=log, flush=True)

    out_png = Path(args.out_figure)
    doc = {
        "what": "Site DOS from our MP recipe on real Materials Project CompleteDos documents vs our GPAW "
                "engine on the same structures (Si mp-149, bcc Fe mp-13)",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "energy_grid": {"points": int(ENERGY_GRID.size), "min_eV": float(ENERGY_GRID[0]),
                        "max_eV": float(ENERGY_GRID[-1]), "zero": "E_F (GPAW: VBM when its gap > 0.3 eV)"},
        "metrics": {"integral_below_EF": "∫_{-10}^{0} DOS dE, trapezoid on the 400-point grid closed at 0 eV "
                                         "(electrons per site in the window)",
                    "l1_mean_abs_diff": "mean over the 400 grid points of |MP − GPAW| (states/eV/site)",
                    "cosine_similarity": "dot(MP, GPAW) / (|MP| |GPAW|) over the 400 grid points"},
        "protocols": {
            "mp_recipe": {"source": "Materials Project (VASP, PBE/PAW; MP's own NSCF uniform DOS run)",
                          "module": "dosmatgen.dos.mp_convert.site_dos_from_complete_dos",
                          "orbitals": "+".join(DEFAULT_ORBITALS), "spins": "summed",
                          "required_points": MP_GRID_POINTS,
                          "smoothing": f"gaussian_filter1d, sigma = {SMOOTH_SIGMA_POINTS} points of the source grid",
                          "smoothing_sigma_eV": {r["label"]: r["mp"]["diagnostics"]["smoothing_sigma_eV"]
                                                 for r in results},
                          "reference": "efermi of the CompleteDos",
                          "regrid": "linear interpolation onto the 400-point grid, 0 outside the source window"},
            "gpaw_engine": dict(engine.protocol(), version=version,
                                wide_grid_for_diagnostic=list(WIDE_GRID)),
        },
        "cases": results,
        "gpaw_cache": str(args.gpaw_cache),
        "wall_s": time.time() - t_start,
        "gpaw_seconds_total": sum(r["gpaw"]["seconds"] for r in results),
        "host": {"python": platform.python_version(), "machine": platform.machine(),
                 "threads": "OMP_NUM_THREADS=1 (and the other thread-pool variables) in the GPAW worker"},
        "figure": [str(out_png), str(out_png.with_suffix(".pdf"))],
    }
    draw(doc, out_png)
    atomic_save_json(args.out_json, doc)
    print(f"wrote {out_png}, {out_png.with_suffix('.pdf')}, {args.out_json} in {doc['wall_s']:.0f} s", file=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
