"""The first atom's DOS against the target, and statistics of a group of candidates.

Units. ``dos_mae`` is in states/eV/site (raw DOS, the project's convention in
:mod:`dosmatgen.evaluate.metrics`); ``dos_mae_std`` is the same difference in the surrogate's
standardised units (the paper's surrogate error 0.096 is quoted in those); ``cosine`` is the
cosine similarity of the raw DOS curves (1 = same shape). All three are computed over the whole
grid, or over an energy window when a window mask is given.

>>> import numpy as np
>>> round(cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])), 4)
0.7071
>>> composition_diversity(["NiO", "NiO", "FeO", None], 4)
0.5
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import ConfigError
from dosmatgen.studies.candidates import finite_mean, finite_median, rounded, StudyCandidate
from dosmatgen.studies.setup import StudyModels


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two curves (0 when either is all zeros)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def dos_match(pred_raw: np.ndarray, target_raw: np.ndarray, standardiser,
              window: np.ndarray | None = None) -> dict[str, float]:
    """MAE (raw, states/eV/site), MAE (standardised) and cosine (raw) of one site DOS against the
    target, over the energy bins selected by the bool mask ``window`` (all bins when None)."""
    pred_raw = np.asarray(pred_raw, dtype=np.float64)
    target_raw = np.asarray(target_raw, dtype=np.float64)
    sel = np.ones(N_DOS, dtype=bool) if window is None else np.asarray(window, dtype=bool)
    if not sel.any():
        raise ConfigError("the energy window selects no grid point")
    p_std = np.asarray(standardiser.transform(pred_raw[None]), dtype=np.float64)[0]
    t_std = np.asarray(standardiser.transform(target_raw[None]), dtype=np.float64)[0]
    return {"dos_mae": float(np.mean(np.abs(pred_raw[sel] - target_raw[sel]))),
            "dos_mae_std": float(np.mean(np.abs(p_std[sel] - t_std[sel]))),
            "cosine": cosine_similarity(pred_raw[sel], target_raw[sel])}


def surrogate_site_dos(models: StudyModels, records: Sequence[CrystalRecord], batch_size: int = 128,
                       device: str = "cpu", progress: bool = False) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Raw (states/eV/site) per-atom DOS predicted by the surrogate, one (N, 400) array per record,
    or None with a reason when the crystal graph cannot be built
    (:func:`dosmatgen.model.surrogate.predict_site_dos`)."""
    from dosmatgen.model.surrogate import predict_site_dos

    items = [(r.atomic_numbers, r.frac_coords, r.lattice) for r in records]
    return predict_site_dos(models.surrogate, models.surrogate_std, items, batch_size=batch_size, device=device,
                            progress=progress)


def score_first_atom(models: StudyModels, candidates: Sequence[StudyCandidate], target_raw: np.ndarray,
                     window: np.ndarray | None = None, device: str = "cpu", progress: bool = False,
                     use_relaxed: bool = False) -> None:
    """Fill ``dos_mae``, ``dos_mae_std``, ``cosine`` and ``pred_dos`` of every valid candidate
    from the surrogate's DOS of its first atom (in place). A crystal the surrogate cannot
    featurise keeps ``None`` scores and gets ``extra['surrogate_failed']``. With ``use_relaxed``,
    the structure in ``candidate.extra['_relaxed_record']`` is scored when present."""
    todo = [c for c in candidates if c.valid]
    recs = [(c.extra.get("_relaxed_record") if use_relaxed and c.extra.get("_relaxed_record") is not None
             else c.record) for c in todo]
    if not recs:
        return
    preds, reasons = surrogate_site_dos(models, recs, device=device, progress=progress)
    for c, p, why in zip(todo, preds, reasons):
        if p is None:
            c.extra["surrogate_failed"] = why or "unknown"
            continue
        c.pred_dos = np.asarray(p[0], dtype=np.float32)
        m = dos_match(p[0], target_raw, models.surrogate_std, window)
        c.dos_mae, c.dos_mae_std, c.cosine = m["dos_mae"], m["dos_mae_std"], m["cosine"]


def composition_diversity(formulas: Iterable[str | None], n: int) -> float:
    """Unique reduced formulas among the built candidates divided by ``n`` (all generated)."""
    uniq = {f for f in formulas if f}
    return len(uniq) / n if n else 0.0


def element_distribution(symbols: Iterable[str | None]) -> dict[str, int]:
    """Counts per element, most common first (ties alphabetical)."""
    c = Counter(s for s in symbols if s)
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def format_distribution(dist: dict[str, int], top: int = 6) -> str:
    items = list(dist.items())
    text = " ".join(f"{k}:{v}" for k, v in items[:top])
    if len(items) > top:
        text += f" (+{len(items) - top} more)"
    return text


def group_summary(group: str, cands: Sequence[StudyCandidate]) -> dict[str, Any]:
    """Statistics shared by every study for one group of candidates."""
    n = len(cands)
    valid = [c for c in cands if c.valid]
    return {"group": group, "n_generated": n, "n_valid": len(valid),
            "composition_diversity": rounded(composition_diversity((c.formula for c in cands if c.record), n)),
            "n_unique_formulas": len({c.formula for c in cands if c.formula}),
            "first_atom_elements": format_distribution(element_distribution(c.first_element for c in cands)),
            "mean_dos_mae": rounded(finite_mean(c.dos_mae for c in valid)),
            "median_dos_mae": rounded(finite_median(c.dos_mae for c in valid)),
            "mean_dos_mae_std": rounded(finite_mean(c.dos_mae_std for c in valid)),
            "mean_cosine": rounded(finite_mean(c.cosine for c in valid)),
            "best_cosine": rounded(max((c.cosine for c in valid if c.cosine is not None), default=None))}


def best_candidate(cands: Sequence[StudyCandidate], key: str = "dos_mae") -> StudyCandidate | None:
    """Lowest ``dos_mae`` (or highest ``cosine``) among valid scored candidates; ties by id."""
    scored = [c for c in cands if c.valid and getattr(c, key) is not None]
    if not scored:
        return None
    if key == "cosine":
        return min(scored, key=lambda c: (-c.cosine, c.candidate_id))
    return min(scored, key=lambda c: (getattr(c, key), c.candidate_id))


def best_columns(best: StudyCandidate | None) -> dict[str, Any]:
    """The summary columns ``best_*`` of a group's :func:`best_candidate` (None without one)."""
    return {"best_id": best and best.candidate_id, "best_formula": best and best.formula,
            "best_dos_mae": rounded(best and best.dos_mae), "best_cosine": rounded(best and best.cosine)}


def highlight(c: StudyCandidate, label: str, **extra: Any) -> dict[str, Any]:
    """What a figure needs about one candidate: its structure and first-atom DOS."""
    out = {"label": label, "candidate_id": c.candidate_id, "group": c.group, "formula": c.formula,
           "first_element": c.first_element, "dos_mae": rounded(c.dos_mae), "cosine": rounded(c.cosine),
           "pred_dos": None if c.pred_dos is None else np.round(c.pred_dos.astype(float), 5).tolist(),
           "structure": c.structure_json()}
    out.update(extra)
    return out
