"""Template-guided generation (paper §3.2.2, Fig. 5).

Instead of the prior at T = 1000, sampling starts from a template crystal noised with the forward
processes to t0 (paper: 200, 350, 500) and denoises from there. A subset of the template's atoms
(paper: the Zn atoms of Zn2Sn6, mp-971919, i.e. the minority element) is conditioned on the target
site DOS; the others are unconditioned. ``n_candidates`` crystals per t0 (paper: 50).

Template. A CIF/POSCAR path or a ``structure_id`` of the store. Without one, a deterministic rule
picks a Zn2Sn6-like crystal from the store (:func:`choose_template`): the binary crystal whose
atoms are all metals (pymatgen ``Element.is_metal``), that does not contain the target's element,
closest to 8 atoms, then closest to a 1:3 minority fraction, then by ``structure_id``; if the
store has no all-metal binary, any binary; then any crystal. A chosen cell with fewer atoms that
divide 8 is repeated along c to 8 atoms (:func:`expand_to_size`: an L1_2 A3B cell becomes A6B2, the
paper's Zn2Sn6 stoichiometry). The template's atoms are reordered so that the conditioned atoms
come first (the figures plot the first atom's DOS).

Reported per t0 (how far the structure and composition move as t0 grows): StructureMatcher match
to the template (species-aware; and geometry only, every species replaced by one element), the
fraction of atoms keeping the template element at their index (all atoms, conditioned atoms,
other atoms), composition match to the template, composition diversity, the element distribution
of the conditioned atoms (paper: Zn → Fe, Co), and the first atom's DOS match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.data.schema import CrystalRecord, element_symbol
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.generate.specs import template_spec
from dosmatgen.studies.candidates import make_candidates, structure_json
from dosmatgen.studies.output import write_study
from dosmatgen.studies.scoring import (best_candidate, best_columns, element_distribution, format_distribution,
                                       group_summary, highlight, score_first_atom)
from dosmatgen.studies.setup import (check_counts, config_to_dict, guidance_text, sample_crystals, SamplingConfig,
                                     StudyModels)
from dosmatgen.studies.targets import TargetDOS


@dataclass
class TemplateConfig(SamplingConfig):
    """Template study settings (defaults: the paper's).

    Attributes:
        t0s: starting timesteps, one group each.
        n_candidates: crystals per t0.
        template: CIF/POSCAR path or store ``structure_id``; None: :func:`choose_template`.
        cond_atoms: indices (in the template's original order) of the conditioned atoms;
            None: the atoms of the minority element.
        template_size: preferred atom count of the automatically chosen template (paper: 8).
        match_timeout_s: per-pair StructureMatcher timeout.

    ``sampler.steps`` (when set) is the number of steps for the full T; a start at t0 uses
    :meth:`~dosmatgen.generate.options.SamplerOptions.steps_from` of them (the same stride).
    """

    t0s: tuple[int, ...] = (200, 350, 500)
    n_candidates: int = 50
    template: str | None = None
    cond_atoms: tuple[int, ...] | None = None
    template_size: int = 8
    match_timeout_s: float = 10.0

    def check(self) -> None:
        super().check()
        if not self.t0s or any(int(t) < 1 for t in self.t0s):
            raise ConfigError(f"t0s must be positive timesteps, got {list(self.t0s)}")
        check_counts(n_candidates=self.n_candidates)


SUMMARY_COLUMNS = ("group", "t0", "n_generated", "n_valid", "structure_match_template", "geometry_match_template",
                   "composition_match_template", "keep_element_all", "keep_element_conditioned",
                   "keep_element_other", "conditioned_elements", "composition_diversity", "n_unique_formulas",
                   "mean_dos_mae", "mean_cosine", "best_id", "best_formula", "best_dos_mae", "best_cosine")


def _is_metal(z: int) -> bool:
    from pymatgen.core.periodic_table import Element

    return bool(Element.from_Z(int(z)).is_metal)


def choose_template(records: Sequence[CrystalRecord], exclude_element: str | None = None,
                    size: int = 8) -> tuple[CrystalRecord, str]:
    """Pick the template by the rule of the module docstring; return it and the rule that chose it."""
    from pymatgen.core.periodic_table import Element

    if not records:
        raise DataError("the store is empty: no template to choose")
    ex = Element(exclude_element).Z if exclude_element else None
    pool = [r for r in records if ex is None or ex not in set(r.atomic_numbers.tolist())]
    if not pool:
        raise DataError(f"every crystal of the store contains {exclude_element}; pass a template")

    def key(r: CrystalRecord) -> tuple:
        counts = np.unique(r.atomic_numbers, return_counts=True)[1]
        frac = counts.min() / r.num_atoms
        return (abs(r.num_atoms - size), abs(frac - 0.25), r.structure_id)

    binaries = [r for r in pool if len(set(r.atomic_numbers.tolist())) == 2]
    metal_binaries = [r for r in binaries if all(_is_metal(z) for z in set(r.atomic_numbers.tolist()))]
    for tier, rule in ((metal_binaries, "all-metal binary"), (binaries, "binary (no all-metal binary in store)"),
                       (pool, "any crystal (no binary in store)")):
        if tier:
            best = min(tier, key=key)
            return best, (f"{rule} closest to {size} atoms and a 1:3 minority fraction, without "
                          f"{exclude_element}, ties by structure_id")
    raise AssertionError("unreachable")


def load_template(spec: str | None, store_records: Sequence[CrystalRecord] | None,
                  exclude_element: str | None = None, size: int = 8) -> tuple[CrystalRecord, str]:
    """The template record and a sentence saying where it came from.

    ``spec``: an existing file (CIF, POSCAR, ... read by pymatgen), a ``structure_id`` of the
    store, or None (automatic choice). Raises :class:`ConfigError` when ``spec`` is neither."""
    if spec is None:
        if not store_records:
            raise ConfigError("no template given and no store to choose one from (--template PATH or --store)")
        rec, rule = choose_template(store_records, exclude_element, size)
        big = expand_to_size(rec, size)
        cell = big.to_structure().composition.formula.replace(" ", "")
        how = "" if big is rec else f", repeated along c to {big.num_atoms} atoms ({cell})"
        return big, f"chosen from the store: {rec.structure_id} ({rec.formula}){how}; rule: {rule}"
    path = Path(spec)
    if path.exists():
        from pymatgen.core import Structure

        try:
            s = Structure.from_file(str(path))
        except Exception as exc:  # pymatgen raises many types for unreadable files
            raise ConfigError(f"template file {path} could not be read as a crystal: {exc}") from exc
        return CrystalRecord.from_structure(s, path.stem), f"file {path}"
    if store_records:
        match = [r for r in store_records if r.structure_id == spec]
        if match:
            return match[0], f"store record {spec} ({match[0].formula})"
    raise ConfigError(f"template {spec!r} does not exist (neither a file nor a structure_id of the store)")


def expand_to_size(record: CrystalRecord, size: int) -> CrystalRecord:
    """A 1x1xk supercell with k = size / N when N divides ``size`` (an L1_2 4-atom cell becomes an
    8-atom cell with two minority atoms, like the paper's Zn2Sn6); otherwise the record itself."""
    n = record.num_atoms
    if n >= size or size % n:
        return record
    k = size // n
    frac = np.concatenate([(record.frac_coords % 1.0 + [0, 0, i]) / [1, 1, k] for i in range(k)])
    z = np.tile(record.atomic_numbers, k)
    lat = record.lattice * np.array([[1], [1], [k]])
    dos = None if record.dos is None else np.tile(record.dos, (k, 1))
    return CrystalRecord(f"{record.structure_id}-x{k}", z, frac, lat, dos, dict(record.provenance))


def minority_atoms(record: CrystalRecord) -> list[int]:
    """Indices of the atoms of the least frequent element (ties: the lighter element)."""
    zs, counts = np.unique(record.atomic_numbers, return_counts=True)
    z = int(zs[np.lexsort((zs, counts))][0])
    return [int(i) for i in np.flatnonzero(record.atomic_numbers == z)]


def conditioned_first(record: CrystalRecord, cond_atoms: Sequence[int]) -> tuple[CrystalRecord, list[int]]:
    """The template with the conditioned atoms moved to the front; returns it and the new order."""
    n = record.num_atoms
    bad = [i for i in cond_atoms if not 0 <= int(i) < n]
    if bad:
        raise ConfigError(f"conditioned atom index {bad} is out of range for the template's {n} atoms "
                          f"(valid: 0..{n - 1})")
    if not cond_atoms:
        raise ConfigError("no template atom is conditioned")
    order = [int(i) for i in cond_atoms] + [i for i in range(n) if i not in set(int(c) for c in cond_atoms)]
    rec = CrystalRecord(record.structure_id, record.atomic_numbers[order], record.frac_coords[order],
                        record.lattice, None if record.dos is None else record.dos[order], dict(record.provenance))
    return rec, order


def _geometry_only(structure):
    s = structure.copy()
    s.replace_species({sp: "Si" for sp in s.composition.elements})
    return s


def run_template(models: StudyModels, target: TargetDOS, cfg: TemplateConfig, out_dir: str | Path,
                 store_records: Sequence[CrystalRecord] | None = None) -> dict[str, Any]:
    """Run the template study and write ``out_dir``; returns the results dict."""
    from dosmatgen.evaluate.metrics import timed_fit

    cfg.check()
    T = models.timesteps
    bad_t = [int(t) for t in cfg.t0s if int(t) > T]
    if bad_t:
        raise ConfigError(f"t0 {bad_t} exceeds the model's T = {T}")
    template, origin = load_template(cfg.template, store_records, target.element, cfg.template_size)
    cond = list(cfg.cond_atoms) if cfg.cond_atoms is not None else minority_atoms(template)
    template, order = conditioned_first(template, cond)
    n_cond = len(cond)
    cond_std = models.diffusion_std.transform(target.dos[None])[0]
    tmpl_struct = template.to_structure()
    tmpl_geom = _geometry_only(tmpl_struct)
    tz = template.atomic_numbers

    candidates, groups = [], []
    for gi, t0 in enumerate(int(t) for t in cfg.t0s):
        group = f"t0={t0}"
        spec = template_spec(template, cfg.n_candidates, cond_std, list(range(n_cond)))
        raw = sample_crystals(models, spec, cfg, seed=cfg.seed + 1000 * gi, t0=t0, desc=f"template {group}")
        cands = make_candidates(raw, group, f"template-t{t0}")
        for c, (types, _, _) in zip(cands, raw):
            same = np.asarray(types) == tz
            c.extra.update({"keep_all": float(same.mean()), "keep_cond": float(same[:n_cond].mean()),
                            "keep_other": float(same[n_cond:].mean()) if n_cond < len(tz) else None,
                            "cond_elements": " ".join(element_symbol(z) for z in types[:n_cond])})
            if c.record is not None:
                s = c.record.to_structure()
                c.extra["structure_match"] = timed_fit(s, tmpl_struct, cfg.match_timeout_s) == "match"
                c.extra["geometry_match"] = timed_fit(_geometry_only(s), tmpl_geom, cfg.match_timeout_s) == "match"
                c.extra["composition_match"] = c.formula == template.formula
        groups.append((t0, group, cands))
        candidates.extend(cands)
    score_first_atom(models, candidates, target.dos, device=cfg.device, progress=cfg.progress)

    rows, highlights = [], []
    for t0, group, cands in groups:
        row = group_summary(group, cands)
        n = len(cands)
        row["t0"] = t0
        row.update({f"{k}_match_template": _frac(sum(bool(c.extra.get(f"{k}_match")) for c in cands), n)
                    for k in ("structure", "geometry", "composition")})
        row.update({f"keep_element_{k}": _mean(c.extra[f"keep_{short}"] for c in cands)
                    for k, short in (("all", "all"), ("conditioned", "cond"), ("other", "other"))})
        row["conditioned_elements"] = format_distribution(element_distribution(
            el for c in cands for el in c.extra["cond_elements"].split()))
        best = best_candidate(cands)
        row.update(best_columns(best))
        rows.append(row)
        if best is not None:
            highlights.append(highlight(best, f"T = {t0}", n_conditioned=n_cond))
    notes = [f"template: {origin}; conditioned atoms (original indices) {cond} moved first: order {order}",
             f"target: {target.element} site of {target.structure_id} ({target.source})",
             "structure/geometry/composition match: fraction of all generated candidates matching the template "
             "(StructureMatcher ltol 0.3, stol 0.5, angle_tol 10; geometry = every species replaced by Si); "
             "keep_element_*: fraction of atoms whose element is the template's at the same index",
             "DOS of generated atoms from the surrogate model; MAE in states/eV/site, cosine on raw curves",
             f"sampling: template noised to t0, CFG {guidance_text(cfg)}, steps per t0 = ceil(steps*t0/T) "
             f"(steps={cfg.sampler.steps or 'all'}), seed={cfg.seed}"]
    tmpl_json = {"structure_id": template.structure_id, "formula": template.formula, "origin": origin,
                 "n_conditioned": n_cond, "order": order,
                 "structure": structure_json(template),
                 "first_atom_dos": None if template.dos is None else np.round(template.dos[0], 5).tolist()}
    results = {"config": config_to_dict(cfg), "target": target.to_json(), "models": models.meta,
               "template": tmpl_json, "highlights": highlights, "figure": "fig5"}
    write_study(out_dir, study="template", title="Template-guided generation (paper §3.2.2)", summary_rows=rows,
                summary_columns=SUMMARY_COLUMNS, candidates=candidates, results=results, notes=notes)
    return results


def _frac(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _mean(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return round(float(np.mean(v)), 4) if v else None
