"""Masked generation (paper §3.2.1, Fig. 4).

For each atom count N (paper: 4, 5, 6, 7) generate ``n_candidates`` crystals (paper: 50) from the
prior at T = 1000 with classifier-free guidance, the first atom conditioned on the target site DOS
(paper: Ni in L1_2 Au3Ni) and every other atom unconditioned (the learned null condition).

Reported per N: element distribution of the first atom (paper: mostly Ni), composition diversity
(unique reduced formulas / candidates), the first atom's DOS match to the target (surrogate DOS:
MAE in states/eV/site and in standardised units, cosine similarity), and the best candidate
(lowest MAE), which Fig. 4 shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dosmatgen.errors import ConfigError
from dosmatgen.generate.specs import prior_spec
from dosmatgen.studies.candidates import make_candidates
from dosmatgen.studies.output import write_study
from dosmatgen.studies.scoring import best_candidate, best_columns, group_summary, highlight, score_first_atom
from dosmatgen.studies.setup import (check_counts, config_to_dict, guidance_text, sample_crystals, SamplingConfig,
                                     StudyModels)
from dosmatgen.studies.targets import TargetDOS


@dataclass
class MaskedConfig(SamplingConfig):
    """Masked-generation study settings (defaults: the paper's).

    Attributes:
        n_atoms: atom counts, one group each.
        n_candidates: crystals per group.
        cond_atoms: indices of the conditioned atoms (paper: the first atom only).
    """

    n_atoms: tuple[int, ...] = (4, 5, 6, 7)
    n_candidates: int = 50
    cond_atoms: tuple[int, ...] = (0,)

    def check(self) -> None:
        super().check()
        check_counts(self.n_atoms, n_candidates=self.n_candidates)
        if not self.cond_atoms:
            raise ConfigError("cond_atoms is empty: masked generation conditions at least one atom")
        smallest = min(int(n) for n in self.n_atoms)
        bad = [i for i in self.cond_atoms if not 0 <= int(i) < smallest]
        if bad:
            raise ConfigError(f"conditioned atom index {bad} is out of range for crystals of {smallest} atoms "
                              f"(valid: 0..{smallest - 1})")


SUMMARY_COLUMNS = ("group", "n_atoms", "n_generated", "n_valid", "first_atom_is_target_element",
                   "first_atom_elements", "composition_diversity", "n_unique_formulas", "mean_dos_mae",
                   "median_dos_mae", "mean_dos_mae_std", "mean_cosine", "best_id", "best_formula",
                   "best_dos_mae", "best_cosine")


def run_masked(models: StudyModels, target: TargetDOS, cfg: MaskedConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run the masked-generation study and write ``out_dir`` (see :func:`common.write_study`).

    Returns the results dict (also in ``out_dir/results.json``)."""
    cfg.check()
    cond_std = models.diffusion_std.transform(target.dos[None])[0]
    candidates = []
    groups: list[tuple[int, str, list]] = []
    for gi, n in enumerate(int(v) for v in cfg.n_atoms):
        group = f"N={n}"
        spec = prior_spec([n] * cfg.n_candidates, cond_std, cfg.cond_atoms,
                          ids=[f"masked-n{n}-{i:04d}" for i in range(cfg.n_candidates)])
        raw = sample_crystals(models, spec, cfg, seed=cfg.seed + 1000 * gi, desc=f"masked {group}")
        cands = make_candidates(raw, group, f"masked-n{n}")
        groups.append((n, group, cands))
        candidates.extend(cands)
    score_first_atom(models, candidates, target.dos, device=cfg.device, progress=cfg.progress)

    rows, highlights = [], []
    for n, group, cands in groups:
        row = group_summary(group, cands)
        row["n_atoms"] = n
        built = [c for c in cands if c.record is not None]
        row["first_atom_is_target_element"] = (round(sum(c.first_element == target.element for c in built)
                                                     / len(cands), 4) if cands else None)
        best = best_candidate(cands)
        row.update(best_columns(best))
        rows.append(row)
        if best is not None:
            highlights.append(highlight(best, f"N = {n}"))
    notes = [f"target: {target.element} site of {target.structure_id} ({target.source})",
             "DOS of generated atoms from the surrogate model; MAE in states/eV/site (raw), "
             "dos_mae_std in the surrogate's standardised units; cosine on raw curves",
             "composition_diversity = unique reduced formulas / candidates generated",
             f"sampling: T={models.timesteps} from the prior, steps={cfg.sampler.steps or models.timesteps}, "
             f"CFG {guidance_text(cfg)}, seed={cfg.seed}"]
    results = {"config": config_to_dict(cfg), "target": target.to_json(), "models": models.meta,
               "highlights": highlights, "figure": "fig4"}
    write_study(out_dir, study="masked", title="Masked generation (paper §3.2.1)", summary_rows=rows,
                summary_columns=SUMMARY_COLUMNS, candidates=candidates, results=results, notes=notes)
    return results

