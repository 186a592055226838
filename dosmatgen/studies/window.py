"""Beyond the paper: an energy-window target and a guidance-strength (ω) sweep.

The paper's IrO2 screening (§3.3) ends with candidates that all contain Ir in rutile-like
environments and suggests that "it may only be necessary to match certain regions in the DOS
(i.e. near the Fermi level)". This study tests that suggestion.

Window targets. A window [lo, hi] eV (relative to E_F) of the target DOS is asked for:

* conditioning: the target is standardised with the diffusion model's standardiser and every bin
  outside the window is set to 0, i.e. to the training-set mean DOS of that bin. This is the
  simplest honest choice: the model was never trained on partial conditions, so "no information"
  outside the window is expressed as "an average site" rather than by a new mask the model does
  not know (:func:`window_condition`). The window [-10, 10] is the whole grid ("full", the
  paper's target);
* scoring: MAE and cosine of the first atom's surrogate DOS over (a) the whole grid, (b) the
  group's own window (``own_win_*``) and (c) one common scoring window for every group (``win_*``;
  default the narrowest configured window), so that all groups are compared on the same question.

ω sweep. For each window and each ω in ``omegas`` (default 0, 0.5, 1, 2, 4;
ε = (1+ω) ε(S_t, y) − ω ε(S_t, ∅)), ``n_candidates`` crystals are generated with the first atom
conditioned, atom counts cycling through ``n_atoms``. All groups use the same seed (common random
numbers), so differences between groups come from the condition, not from the noise draw.
Reported per group: DOS match, composition diversity (unique reduced formulas / candidates),
stability (MLFF formation energy per atom after relaxation, and the fraction below
``ef_threshold``), earth abundance (:func:`is_earth_abundant`); and, per ω, every narrower window
against the full target.

>>> is_earth_abundant("Fe"), is_earth_abundant("Ir"), is_earth_abundant("Co")
(True, False, True)
>>> int(energy_window_mask(-1.0, 1.0).sum()), window_label((-10, 10)), window_label((-2, 2))
(40, 'full', '[-2,2] eV')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.data.schema import element_symbol
from dosmatgen.dos.grid import ENERGY_GRID, N_DOS
from dosmatgen.errors import ConfigError
from dosmatgen.evaluate.formation import MIN_PLAUSIBLE_EF
from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS
from dosmatgen.generate.specs import prior_spec
from dosmatgen.studies.candidates import (finite_mean, finite_median, formation_energies, make_candidates, rounded,
                                          StudyCandidate)
from dosmatgen.studies.output import write_study
from dosmatgen.studies.scoring import dos_match, group_summary, highlight, score_first_atom
from dosmatgen.studies.setup import (check_counts, config_to_dict, sample_crystals, SamplingConfig, spec_fingerprint,
                                     StudyModels, work_root)
from dosmatgen.studies.targets import TargetDOS

#: Crustal abundance in mg/kg (CRC Handbook of Chemistry and Physics, "Abundance of elements in the
#: earth's crust", rounded). Used only to call an element earth-abundant.
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
    """At least :data:`EARTH_ABUNDANT_MG_PER_KG` in the crust; an element missing from the table is not."""
    return symbol is not None and CRUSTAL_ABUNDANCE_MG_PER_KG.get(symbol, 0.0) >= EARTH_ABUNDANT_MG_PER_KG


def energy_window_mask(lo_ev: float, hi_ev: float) -> np.ndarray:
    """Bool mask of the grid points with lo <= E <= hi (E relative to E_F, eV)."""
    if not hi_ev > lo_ev:
        raise ConfigError(f"energy window [{lo_ev}, {hi_ev}] eV is empty (need lo < hi)")
    mask = (ENERGY_GRID >= lo_ev - 1e-9) & (ENERGY_GRID <= hi_ev + 1e-9)
    if not mask.any():
        raise ConfigError(f"energy window [{lo_ev}, {hi_ev}] eV contains no grid point "
                          f"(grid {ENERGY_GRID[0]:g}..{ENERGY_GRID[-1]:g} eV)")
    return mask


def is_full_window(window: tuple[float, float]) -> bool:
    return bool(energy_window_mask(*window).all())


def window_label(window: Sequence[float]) -> str:
    lo, hi = float(window[0]), float(window[1])
    return "full" if is_full_window((lo, hi)) else f"[{lo:g},{hi:g}] eV"


def parse_window(text: str | Sequence[float]) -> tuple[float, float]:
    """``"-2:2"`` or ``(-2, 2)`` -> (-2.0, 2.0)."""
    try:
        lo, hi = (str(text).split(":") if isinstance(text, str) else text)
        out = (float(lo), float(hi))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"energy window {text!r} must be 'lo:hi' in eV, e.g. -2:2") from exc
    energy_window_mask(*out)
    return out


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
        windows: (lo, hi) eV windows around E_F; (-10, 10) is the full target.
        omegas: guidance strengths swept.
        score_window: common scoring window (None: the narrowest of ``windows``).
        n_atoms: atom counts the candidates cycle through (the screening's 4..8).
        n_candidates: crystals per (window, ω).
        formation: compute MLFF formation energies (stability axis).
        mlff, mlff_workers, mlff_device, relaxer, fmax, relax_steps, refs_cache, min_plausible_ef,
            work_dir: as in the screening (implausible E_f: counted in ``n_implausible_ef``, left out
            of the E_f median and of ``frac_stable``).
        ef_threshold: "stable" means relaxed E_f <= this (eV/atom).
    """

    windows: tuple[tuple[float, float], ...] = ((-10.0, 10.0), (-2.0, 2.0))
    omegas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    score_window: tuple[float, float] | None = None
    n_atoms: tuple[int, ...] = (4, 5, 6, 7, 8)
    n_candidates: int = 50
    formation: bool = True
    mlff: str = "sevenn"
    mlff_workers: int = 1
    mlff_device: str = "cpu"
    relaxer: str = "ase"
    fmax: float = DEFAULT_FMAX
    relax_steps: int = DEFAULT_RELAX_STEPS
    refs_cache: str | None = None
    ef_threshold: float = -1.5
    min_plausible_ef: float = MIN_PLAUSIBLE_EF
    work_dir: str | None = None

    def check(self) -> None:
        super().check()
        if not self.omegas or any(float(w) < 0 for w in self.omegas):
            raise ConfigError(f"omegas must be >= 0, got {list(self.omegas)}")
        if not self.windows:
            raise ConfigError("no energy window given")
        for w in self.windows:
            parse_window(w)
        if self.score_window is not None:
            parse_window(self.score_window)
        labels = [window_label(w) for w in self.windows]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"energy windows repeat: {labels}")
        check_counts(self.n_atoms, n_candidates=self.n_candidates)

    def scoring_window(self) -> tuple[float, float]:
        if self.score_window is not None:
            return parse_window(self.score_window)
        return min((parse_window(w) for w in self.windows), key=lambda w: (w[1] - w[0], w))


SUMMARY_COLUMNS = ("group", "window", "omega", "n_generated", "n_valid", "mean_win_dos_mae", "mean_win_cosine",
                   "mean_own_win_dos_mae", "mean_dos_mae", "mean_cosine", "composition_diversity",
                   "n_unique_formulas", "first_atom_elements", "first_atom_earth_abundant", "all_earth_abundant",
                   "contains_target_element", "median_ef_unrelaxed", "median_ef_relaxed", "n_implausible_ef",
                   "frac_stable")


def run_window_sweep(models: StudyModels, target: TargetDOS, cfg: WindowConfig, out_dir: str | Path, *,
                     calc: Any = None) -> dict[str, Any]:
    """Run the ω sweep for every energy window and write ``out_dir``; returns the results dict."""
    cfg.check()
    windows = [parse_window(w) for w in cfg.windows]
    score_w = cfg.scoring_window()
    score_mask = energy_window_mask(*score_w)
    sizes = [int(cfg.n_atoms[i % len(cfg.n_atoms)]) for i in range(cfg.n_candidates)]
    groups: list[tuple[str, float, str, list[StudyCandidate]]] = []
    candidates: list[StudyCandidate] = []
    raws = []
    for w in windows:
        label, mask = window_label(w), energy_window_mask(*w)
        cond = window_condition(target.dos, models.diffusion_std, mask)
        for omega in (float(x) for x in cfg.omegas):
            group = f"{label} ω={omega:g}"
            tag = f"win{w[0]:g}_{w[1]:g}-w{omega:g}"
            spec = prior_spec(sizes, cond, (0,), ids=[f"{tag}-{i:04d}" for i in range(cfg.n_candidates)])
            raw = sample_crystals(models, spec, cfg, seed=cfg.seed, omega=omega, desc=group)
            cands = make_candidates(raw, group, tag)
            for c in cands:
                c.extra.update({"window": label, "omega": omega, "_own_mask": mask})
            groups.append((label, omega, group, cands))
            candidates.extend(cands)
            raws.extend(raw)

    score_first_atom(models, candidates, target.dos, device=cfg.device, progress=cfg.progress)
    for c in candidates:
        _window_scores(c, target, models, score_mask)

    form_note = "formation energies not computed (formation=False)"
    if cfg.formation:
        form_note = _formation(candidates, raws, models, target, cfg, out_dir, calc)

    rows, highlights = [], []
    for label, omega, group, cands in groups:
        n = len(cands)
        base = group_summary(group, cands)
        efr_all = [c.extra["ef_relaxed"] for c in cands
                   if c.extra.get("ef_relaxed") is not None and np.isfinite(c.extra["ef_relaxed"])]
        efr = [e for e in efr_all if e >= cfg.min_plausible_ef]
        efu = [c.extra.get("ef_unrelaxed") for c in cands if c.extra.get("ef_unrelaxed") is not None]
        rows.append({
            **base, "window": label, "omega": omega,
            **{f"mean_{k}": rounded(finite_mean(c.extra.get(k) for c in cands))
               for k in ("win_dos_mae", "win_cosine", "own_win_dos_mae")},
            "first_atom_earth_abundant": rounded(sum(is_earth_abundant(c.first_element) for c in cands) / n, 4),
            **{k: rounded(sum(bool(c.extra.get(k)) for c in cands) / n, 4)
               for k in ("all_earth_abundant", "contains_target_element")},
            "median_ef_unrelaxed": rounded(finite_median(efu)), "median_ef_relaxed": rounded(finite_median(efr)),
            "n_implausible_ef": len(efr_all) - len(efr) if cfg.formation else None,
            "frac_stable": rounded(sum(e <= cfg.ef_threshold for e in efr) / n, 4) if cfg.formation else None})
        scored = [c for c in cands if c.extra.get("win_dos_mae") is not None]
        if scored:
            best = min(scored, key=lambda c: (c.extra["win_dos_mae"], c.candidate_id))
            highlights.append(highlight(best, group, window=label, omega=omega,
                                        win_dos_mae=rounded(best.extra.get("win_dos_mae"))))
    comparison, verdict = compare_windows(rows, [window_label(w) for w in windows], list(cfg.omegas))
    notes = [f"target: {target.element} site of {target.structure_id} ({target.source})",
             "window condition: standardised target inside the window, 0 (= training-mean DOS) outside",
             f"win_* scores: common scoring window [{score_w[0]:g}, {score_w[1]:g}] eV ({int(score_mask.sum())} of "
             f"{N_DOS} bins) for every group; own_win_*: the group's own window; dos_mae/cosine: whole grid",
             f"earth-abundant: crustal abundance >= {EARTH_ABUNDANT_MG_PER_KG:g} mg/kg (CRC Handbook table in "
             "dosmatgen/studies/window.py)",
             "all groups share one seed (common random numbers); atom counts cycle through "
             f"{list(cfg.n_atoms)}",
             form_note] + verdict
    results = {"config": config_to_dict(cfg), "target": target.to_json(), "models": models.meta,
               "windows": [list(w) for w in windows], "score_window": list(score_w),
               "highlights": highlights, "comparison": comparison, "verdict": verdict, "figure": "window_sweep"}
    write_study(out_dir, study="window", title="Energy-window targets and guidance sweep (beyond the paper)",
                summary_rows=rows, summary_columns=SUMMARY_COLUMNS, candidates=candidates, results=results,
                notes=notes, extra_tables={"window_vs_full": comparison} if comparison else None)
    return results


def _window_scores(c: StudyCandidate, target: TargetDOS, models: StudyModels, score_mask: np.ndarray) -> None:
    """The first atom's DOS match in the common scoring window and in the group's own window, and
    the crystal's earth abundance and target element (in ``c.extra``)."""
    own = c.extra.pop("_own_mask")
    if c.pred_dos is not None:
        m = dos_match(c.pred_dos, target.dos, models.surrogate_std, score_mask)
        o = dos_match(c.pred_dos, target.dos, models.surrogate_std, own)
        c.extra.update({"win_dos_mae": m["dos_mae"], "win_dos_mae_std": m["dos_mae_std"], "win_cosine": m["cosine"],
                        "own_win_dos_mae": o["dos_mae"], "own_win_cosine": o["cosine"]})
    if c.record is not None:
        els = {element_symbol(z) for z in c.record.atomic_numbers}
        c.extra.update({"all_earth_abundant": all(is_earth_abundant(e) for e in els),
                        "contains_target_element": target.element in els})


_COMPARED = ("composition_diversity", "all_earth_abundant", "first_atom_earth_abundant", "contains_target_element",
             "mean_win_dos_mae", "median_ef_relaxed")


def compare_windows(rows: Sequence[dict[str, Any]], labels: Sequence[str],
                    omegas: Sequence[float]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per ω and per narrower window: window minus reference (the full target, else the first
    window) for diversity, earth abundance, target-element presence, common-window MAE and
    stability; plus sentences stating what the numbers say (counts out of ``n_candidates``; no
    significance is implied)."""
    by = {(r["window"], r["omega"]): r for r in rows}
    ref = "full" if "full" in labels else labels[0]
    comp = []
    for lab in labels:
        if lab == ref:
            continue
        for w in (float(x) for x in omegas):
            f, g = by.get((ref, w)), by.get((lab, w))
            if f is None or g is None:
                continue
            row: dict[str, Any] = {"window": lab, "reference": ref, "omega": w}
            for k in _COMPARED:
                a, b = f.get(k), g.get(k)
                row[f"ref_{k}"], row[f"win_{k}"] = a, b
                row[f"delta_{k}"] = None if a is None or b is None else rounded(b - a)
            comp.append(row)
    verdict: list[str] = []
    for lab in labels:
        sub = [r for r in comp if r["window"] == lab]
        if not sub:
            continue

        def tally(k: str, meaning: str) -> str:
            d = [r[f"delta_{k}"] for r in sub if r[f"delta_{k}"] is not None]
            if not d:
                return f"{lab} vs {ref}, {k}: not available"
            up, down = sum(x > 0 for x in d), sum(x < 0 for x in d)
            return (f"{lab} vs {ref}, {k}: higher at {up}, lower at {down}, equal at {len(d) - up - down} of "
                    f"{len(d)} ω values (mean Δ {np.mean(d):+.3f}; {meaning})")

        verdict += [tally("composition_diversity", "higher = more diverse"),
                    tally("all_earth_abundant", "higher = more all-earth-abundant crystals"),
                    tally("contains_target_element", "lower = fewer crystals containing the target element"),
                    tally("mean_win_dos_mae", "lower = better match in the common scoring window"),
                    tally("median_ef_relaxed", "lower = more stable")]
        d_div = [r["delta_composition_diversity"] for r in sub if r["delta_composition_diversity"] is not None]
        d_ea = [r["delta_all_earth_abundant"] for r in sub if r["delta_all_earth_abundant"] is not None]
        if d_div and d_ea:
            yes = np.mean(d_div) > 0 and np.mean(d_ea) > 0
            verdict.append(f"answer ({lab}): the window target " + ("DID" if yes else "did NOT") +
                           f" yield both more diverse and more earth-abundant candidates than the {ref} target "
                           f"on average over ω (mean Δdiversity {np.mean(d_div):+.3f}, mean Δ all-earth-abundant "
                           f"fraction {np.mean(d_ea):+.3f})")
    return comp, verdict


def _formation(candidates: Sequence[StudyCandidate], raws: Sequence, models: StudyModels, target: TargetDOS,
               cfg: WindowConfig, out_dir: str | Path, calc: Any) -> str:
    key = spec_fingerprint(models.meta.get("checkpoint"), target.dos.astype(np.float32), config_to_dict(cfg))
    formation_energies(candidates, raws, work_root(cfg, out_dir) / f"window-{key}" / "formation.json", cfg, calc,
                       "window sweep")
    name = cfg.mlff if calc is None else type(calc).__name__
    return (f"stability: MLFF {name} formation energy per atom after relaxation (fmax {cfg.fmax}, "
            f"{cfg.relax_steps} steps); median over the candidates with E_f >= {cfg.min_plausible_ef} eV/atom "
            f"(below: MLFF blow-ups, n_implausible_ef); frac_stable = share of all candidates with "
            f"{cfg.min_plausible_ef} <= E_f <= {cfg.ef_threshold} eV/atom")


