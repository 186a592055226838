"""Beyond the paper: an energy-window target and a guidance-strength (ω) sweep.

The paper's IrO2 screening (§3.3) ends with candidates that all contain Ir in rutile-like
environments and suggests that "it may only be necessary to match certain regions in the DOS
(i.e. near the Fermi level)". This study tests that suggestion.

Window target. Only E_F ± ``window_ev`` of the target DOS is asked for:

* conditioning: the target is standardised with the diffusion model's standardiser and every bin
  outside the window is set to 0, i.e. to the training-set mean DOS of that bin. This is the
  simplest honest choice: the model was never trained on partial conditions, so "no information"
  outside the window is expressed as "an average site" rather than by a new mask the model does
  not know (:func:`window_condition`);
* scoring: MAE and cosine only over the window bins (``win_*`` columns), for both targets, so the
  two are compared on the same question; full-grid scores are reported too.

ω sweep. For each target kind ("full", "window") and each ω in ``omegas`` (default 0, 0.5, 1, 2, 4;
ε = (1+ω) ε(S_t, y) − ω ε(S_t, ∅)), ``n_candidates`` crystals are generated with the first atom
conditioned, atom counts cycling through ``n_atoms``. All groups use the same seed (common random
numbers), so differences between groups come from the condition, not from the noise draw.
Reported per group: window and full DOS match, composition diversity (unique reduced formulas /
candidates), stability (MLFF formation energy per atom after relaxation, and the fraction below
``ef_threshold``), and earth abundance.

Earth-abundant elements: crustal abundance >= ``EARTH_ABUNDANT_MG_PER_KG`` (10 mg/kg) in the table
:data:`CRUSTAL_ABUNDANCE_MG_PER_KG` (CRC Handbook of Chemistry and Physics, "Abundance of elements
in the earth's crust", rounded); elements missing from the table count as not earth-abundant.

>>> is_earth_abundant("Fe"), is_earth_abundant("Ir"), is_earth_abundant("Co")
(True, False, True)
>>> int(energy_window_mask(1.0).sum())
40
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dosmatgen.dos.grid import ENERGY_GRID, N_DOS
from dosmatgen.errors import ConfigError
from dosmatgen.studies.common import (Candidate, SamplingConfig, StudyModels, _round,
                                      config_to_dict, dos_match, group_summary, highlight, make_candidates,
                                      prior_spec, sample_crystals, score_first_atom, spec_fingerprint,
                                      write_study)
from dosmatgen.studies.targets import TargetDOS

#: Crustal abundance in mg/kg (CRC Handbook, rounded). Used only to call an element earth-abundant.
CRUSTAL_ABUNDANCE_MG_PER_KG: dict[str, float] = {
    "H": 1400, "He": 0.008, "Li": 20, "Be": 2.8, "B": 10, "C": 200, "N": 19, "O": 461000, "F": 585,
    "Ne": 0.005, "Na": 23600, "Mg": 23300, "Al": 82300, "Si": 282000, "P": 1050, "S": 350, "Cl": 145,
    "Ar": 3.5, "K": 20900, "Ca": 41500, "Sc": 22, "Ti": 5650, "V": 120, "Cr": 102, "Mn": 950, "Fe": 56300,
    "Co": 25, "Ni": 84, "Cu": 60, "Zn": 70, "Ga": 19, "Ge": 1.5, "As": 1.8, "Se": 0.05, "Br": 2.4,
    "Kr": 0.0001, "Rb": 90, "Sr": 370, "Y": 33, "Zr": 165, "Nb": 20, "Mo": 1.2, "Ru": 0.001, "Rh": 0.001,
    "Pd": 0.015, "Ag": 0.075, "Cd": 0.15, "In": 0.25, "Sn": 2.3, "Sb": 0.2, "Te": 0.001, "I": 0.45,
    "Xe": 0.00003, "Cs": 3, "Ba": 425, "La": 39, "Ce": 66.5, "Pr": 9.2, "Nd": 41.5, "Sm": 7.05, "Eu": 2.0,
    "Gd": 6.2, "Tb": 1.2, "Dy": 5.2, "Ho": 1.3, "Er": 3.5, "Tm": 0.52, "Yb": 3.2, "Lu": 0.8, "Hf": 3.0,
    "Ta": 2.0, "W": 1.25, "Re": 0.0007, "Os": 0.0015, "Ir": 0.001, "Pt": 0.005, "Au": 0.004, "Hg": 0.085,
    "Tl": 0.85, "Pb": 14, "Bi": 0.0085, "Th": 9.6, "U": 2.7,
}
#: An element at least this abundant in the crust (mg/kg) is "earth-abundant".
EARTH_ABUNDANT_MG_PER_KG: float = 10.0


def is_earth_abundant(symbol: str | None) -> bool:
    return symbol is not None and CRUSTAL_ABUNDANCE_MG_PER_KG.get(symbol, 0.0) >= EARTH_ABUNDANT_MG_PER_KG


def energy_window_mask(half_width_ev: float, center_ev: float = 0.0) -> np.ndarray:
    """Bool mask of the grid points with |E - center| <= half width (E relative to E_F)."""
    if half_width_ev <= 0:
        raise ConfigError(f"the energy window half width must be > 0 eV, got {half_width_ev}")
    mask = np.abs(ENERGY_GRID - center_ev) <= half_width_ev
    if not mask.any():
        raise ConfigError(f"the window E_F{center_ev:+.2f} ± {half_width_ev} eV contains no grid point")
    return mask


def window_condition(target_raw: np.ndarray, standardiser: Any, mask: np.ndarray) -> np.ndarray:
    """Standardised condition with the out-of-window bins set to 0 (the training-mean DOS)."""
    z = np.asarray(standardiser.transform(np.asarray(target_raw)[None]), dtype=np.float32)[0]
    if z.shape != (N_DOS,):
        raise ConfigError(f"target DOS has {z.size} points, expected {N_DOS}")
    return np.where(mask, z, 0.0).astype(np.float32)


@dataclass
class WindowConfig(SamplingConfig):
    """Window / ω-sweep settings.

    Attributes:
        omegas: guidance strengths swept.
        window_ev: half width of the window around E_F (eV).
        modes: target kinds: "full" (whole DOS) and/or "window".
        n_atoms: atom counts the candidates cycle through (the screening's 4..8).
        n_candidates: crystals per (mode, ω).
        formation: compute MLFF formation energies (stability axis).
        mlff, mlff_workers, mlff_device, fmax, relax_steps, refs_cache: as in the screening.
        ef_threshold: "stable" means relaxed E_f <= this (eV/atom).
        work_dir: resumable intermediate files (None: ``<out>.work``).
    """

    omegas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    window_ev: float = 2.0
    modes: tuple[str, ...] = ("full", "window")
    n_atoms: tuple[int, ...] = (4, 5, 6, 7, 8)
    n_candidates: int = 50
    formation: bool = True
    mlff: str = "sevenn"
    mlff_workers: int = 1
    mlff_device: str = "cpu"
    fmax: float = 0.05
    relax_steps: int = 200
    refs_cache: str | None = None
    ef_threshold: float = -1.5
    work_dir: str | None = None

    def check(self) -> None:
        super().check()
        if not self.omegas or any(float(w) < 0 for w in self.omegas):
            raise ConfigError(f"omegas must be >= 0, got {list(self.omegas)}")
        bad = sorted(set(self.modes) - {"full", "window"})
        if bad or not self.modes:
            raise ConfigError(f"unknown target mode(s) {bad or '(none given)'}; choose from 'full', 'window'")
        if not self.n_atoms or any(int(n) < 1 for n in self.n_atoms):
            raise ConfigError(f"n_atoms must be positive atom counts, got {list(self.n_atoms)}")
        if self.n_candidates < 1:
            raise ConfigError(f"n_candidates must be >= 1, got {self.n_candidates}")
        energy_window_mask(self.window_ev)


SUMMARY_COLUMNS = ("group", "mode", "omega", "n_generated", "n_valid", "mean_win_dos_mae", "mean_win_cosine",
                   "mean_dos_mae", "mean_cosine", "composition_diversity", "n_unique_formulas",
                   "first_atom_elements", "first_atom_earth_abundant", "all_earth_abundant",
                   "contains_target_element", "mean_ef_unrelaxed", "mean_ef_relaxed", "frac_stable")


def run_window_sweep(models: StudyModels, target: TargetDOS, cfg: WindowConfig, out_dir: str | Path, *,
                     calc: Any = None) -> dict[str, Any]:
    """Run the ω sweep for the full and the window target and write ``out_dir``."""
    cfg.check()
    mask = energy_window_mask(cfg.window_ev)
    conds = {"full": models.diffusion_std.transform(target.dos[None])[0].astype(np.float32),
             "window": window_condition(target.dos, models.diffusion_std, mask)}
    sizes = [int(cfg.n_atoms[i % len(cfg.n_atoms)]) for i in range(cfg.n_candidates)]
    groups: list[tuple[str, float, str, list[Candidate], list]] = []
    candidates: list[Candidate] = []
    raws = []
    for mode in cfg.modes:
        for omega in (float(w) for w in cfg.omegas):
            group = f"{mode} ω={omega:g}"
            tag = f"win-{mode}-w{omega:g}"
            spec = prior_spec(sizes, conds[mode], (0,), ids=[f"{tag}-{i:04d}" for i in range(cfg.n_candidates)])
            raw = sample_crystals(models, spec, cfg, seed=cfg.seed, omega=omega, desc=group)
            cands = make_candidates(raw, group, tag)
            for c in cands:
                c.extra.update({"mode": mode, "omega": omega})
            groups.append((mode, omega, group, cands, raw))
            candidates.extend(cands)
            raws.extend(raw)

    score_first_atom(models, candidates, target.dos, device=cfg.device, progress=cfg.progress)
    for c in candidates:
        if c.pred_dos is not None:
            m = dos_match(c.pred_dos, target.dos, models.surrogate_std, mask)
            c.extra.update({"win_dos_mae": m["dos_mae"], "win_dos_mae_std": m["dos_mae_std"],
                            "win_cosine": m["cosine"]})
        if c.record is not None:
            els = {_sym(z) for z in c.record.atomic_numbers}
            c.extra.update({"all_earth_abundant": all(is_earth_abundant(e) for e in els),
                            "contains_target_element": target.element in els})

    form_note = "formation energies not computed (formation=False)"
    if cfg.formation:
        form_note = _formation(candidates, raws, models, target, cfg, out_dir, calc)

    rows, highlights = [], []
    for mode, omega, group, cands, _ in groups:
        n = len(cands)
        base = group_summary(group, cands)
        efr = [c.extra.get("ef_relaxed") for c in cands if c.extra.get("ef_relaxed") is not None]
        efu = [c.extra.get("ef_unrelaxed") for c in cands if c.extra.get("ef_unrelaxed") is not None]
        rows.append({
            **base, "mode": mode, "omega": omega,
            "mean_win_dos_mae": _round(_mean(c.extra.get("win_dos_mae") for c in cands)),
            "mean_win_cosine": _round(_mean(c.extra.get("win_cosine") for c in cands)),
            "first_atom_earth_abundant": _round(sum(is_earth_abundant(c.first_element) for c in cands) / n, 4),
            "all_earth_abundant": _round(sum(bool(c.extra.get("all_earth_abundant")) for c in cands) / n, 4),
            "contains_target_element": _round(sum(bool(c.extra.get("contains_target_element")) for c in cands) / n, 4),
            "mean_ef_unrelaxed": _round(_mean(efu)), "mean_ef_relaxed": _round(_mean(efr)),
            "frac_stable": _round(sum(e <= cfg.ef_threshold for e in efr) / n, 4) if cfg.formation else None,
        })
        scored = [c for c in cands if c.extra.get("win_dos_mae") is not None]
        best = min(scored, key=lambda c: (c.extra["win_dos_mae"], c.candidate_id)) if scored else None
        if best is not None:
            highlights.append(highlight(best, group, mode=mode, omega=omega,
                                        win_dos_mae=_round(best.extra.get("win_dos_mae"))))
    comparison, verdict = compare_modes(rows, list(cfg.omegas))
    notes = [f"target: {target.element} site of {target.structure_id} ({target.source}); window E_F ± "
             f"{cfg.window_ev:g} eV ({int(mask.sum())} of {N_DOS} bins)",
             "window condition: standardised target inside the window, 0 (= training-mean DOS) outside; "
             "win_* scores use only the window bins, for both target kinds",
             f"earth-abundant: crustal abundance >= {EARTH_ABUNDANT_MG_PER_KG:g} mg/kg (CRC Handbook table in "
             "dosmatgen/studies/window.py)",
             "all groups share one seed (common random numbers); atom counts cycle through "
             f"{list(cfg.n_atoms)}",
             form_note] + verdict
    results = {"config": config_to_dict(cfg), "target": target.to_json(), "models": models.meta,
               "window_mask": mask.astype(int).tolist(), "highlights": highlights, "comparison": comparison,
               "verdict": verdict, "figure": "window_sweep"}
    write_study(out_dir, study="window", title="Energy-window target and guidance sweep (beyond the paper)",
                summary_rows=rows, summary_columns=SUMMARY_COLUMNS, candidates=candidates, results=results,
                notes=notes, extra_tables={"window_vs_full": comparison} if comparison else None)
    results["summary"] = rows
    return results


def compare_modes(rows: Sequence[dict[str, Any]], omegas: Sequence[float]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per ω: window minus full for diversity, earth abundance, target-element presence, window MAE
    and stability; plus sentences that state what the numbers say (no threshold of significance
    is implied: these are counts out of ``n_candidates``)."""
    by = {(r["mode"], r["omega"]): r for r in rows}
    keys = ("composition_diversity", "all_earth_abundant", "first_atom_earth_abundant", "contains_target_element",
            "mean_win_dos_mae", "mean_ef_relaxed")
    comp = []
    for w in (float(x) for x in omegas):
        f, g = by.get(("full", w)), by.get(("window", w))
        if f is None or g is None:
            continue
        row: dict[str, Any] = {"omega": w}
        for k in keys:
            a, b = f.get(k), g.get(k)
            row[f"full_{k}"], row[f"window_{k}"] = a, b
            row[f"delta_{k}"] = None if a is None or b is None else _round(b - a)
        comp.append(row)
    if not comp:
        return [], []

    def tally(k: str, higher_is: str) -> str:
        d = [r[f"delta_{k}"] for r in comp if r[f"delta_{k}"] is not None]
        if not d:
            return f"{k}: not available"
        up = sum(x > 0 for x in d)
        down = sum(x < 0 for x in d)
        return (f"{k}: window higher at {up}, lower at {down}, equal at {len(d) - up - down} of {len(d)} ω values "
                f"(mean window − full {np.mean(d):+.3f}; {higher_is})")

    verdict = ["window vs full target, " + tally("composition_diversity", "higher = more diverse"),
               "window vs full target, " + tally("all_earth_abundant", "higher = more earth-abundant crystals"),
               "window vs full target, " + tally("contains_target_element", "lower = fewer crystals containing "
                                                 "the target's element"),
               "window vs full target, " + tally("mean_win_dos_mae", "lower = better match inside the window"),
               "window vs full target, " + tally("mean_ef_relaxed", "lower = more stable")]
    d_div = [r["delta_composition_diversity"] for r in comp if r["delta_composition_diversity"] is not None]
    d_ea = [r["delta_all_earth_abundant"] for r in comp if r["delta_all_earth_abundant"] is not None]
    if d_div and d_ea:
        more = np.mean(d_div) > 0 and np.mean(d_ea) > 0
        verdict.append("answer: the window target " + ("DID" if more else "did NOT") +
                       " yield both more diverse and more earth-abundant candidates on average over ω "
                       f"(mean Δdiversity {np.mean(d_div):+.3f}, mean Δearth-abundant fraction {np.mean(d_ea):+.3f})")
    return comp, verdict


def _formation(candidates: Sequence[Candidate], raws: Sequence, models: StudyModels, target: TargetDOS,
               cfg: WindowConfig, out_dir: str | Path, calc: Any) -> str:
    from dosmatgen.evaluate.formation import FormationItem, compute_formation_energies

    root = Path(cfg.work_dir) if cfg.work_dir else Path(str(out_dir).rstrip("/") + ".work")
    key = spec_fingerprint(models.meta.get("checkpoint"), target.dos.astype(np.float32), config_to_dict(cfg))
    items = [FormationItem(c.candidate_id, c.group, z, x, lat) for c, (z, x, lat) in zip(candidates, raws)]
    form = compute_formation_energies(items, root / f"window-{key}" / "formation.json", mlff=cfg.mlff,
                                      workers=1 if calc is not None else cfg.mlff_workers, fmax=cfg.fmax,
                                      steps=cfg.relax_steps, refs_cache=cfg.refs_cache, device=cfg.mlff_device,
                                      calc=calc, input_name="window sweep", progress=cfg.progress)
    by_id = {r["id"]: r for r in form["rows"]}
    for c in candidates:
        r = by_id.get(c.candidate_id, {})
        c.extra.update({"ef_unrelaxed": r.get("ef_unrelaxed"), "ef_relaxed": r.get("ef_relaxed")})
    name = cfg.mlff if calc is None else type(calc).__name__
    return (f"stability: MLFF {name} formation energy per atom after relaxation (fmax {cfg.fmax}, "
            f"{cfg.relax_steps} steps); frac_stable = share of all candidates with E_f <= {cfg.ef_threshold} eV/atom")


def _mean(values: Iterable[float | None]) -> float | None:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _sym(z: int) -> str:
    from pymatgen.core.periodic_table import Element

    return Element.from_Z(int(z)).symbol
