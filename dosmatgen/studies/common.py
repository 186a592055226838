"""Pieces every constrained-generation study shares (paper §3.2, §3.3).

* loading the diffusion model and the surrogate DOS model from checkpoints;
* building a generation spec (N atoms, chosen atoms conditioned on a target site DOS, chosen atoms
  with a clamped type) and sampling it in seeded chunks, optionally cached on disk so that a long
  run resumes where it stopped;
* turning sampled arrays into candidates (validity as in :mod:`dosmatgen.evaluate.metrics`);
* scoring the DOS of the first atom with the surrogate: MAE and cosine similarity to the target;
* writing a study's outputs (summary CSV + markdown, per-candidate CSV + JSON, CIFs) into its
  output folder atomically: everything is written into a staging folder that replaces the output
  folder in one rename.

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

import csv
import hashlib
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dosmatgen.data.schema import MAX_Z, CrystalRecord
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import CheckpointError, ConfigError, DataError
from dosmatgen.generate.generated import RawCrystal
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.io import atomic_save_json, atomic_write, staged_folder


# ---------------------------------------------------------------------------------------------
# configuration shared by the studies
# ---------------------------------------------------------------------------------------------
@dataclass
class SamplingConfig:
    """How every study samples: one :class:`~dosmatgen.generate.options.SamplerOptions` (all studies
    use classifier-free guidance; every group and chunk derives its seed from ``sampler.seed``),
    the torch device and progress bars."""

    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    device: str = "cpu"
    progress: bool = True

    def check(self) -> None:
        self.sampler.check()
        if self.sampler.guidance != "cfg":
            raise ConfigError(f"the studies use classifier-free guidance (paper §3.2), not {self.sampler.guidance!r}")

    @property
    def seed(self) -> int:
        return self.sampler.seed


def guidance_text(cfg: SamplingConfig) -> str:
    """The guidance weights as a summary shows them.

    >>> guidance_text(SamplingConfig(SamplerOptions(omega=1.0, omega_geometry=0.0)))
    'omega=1.0, omega_geometry=0.0'
    """
    return cfg.sampler.describe().removeprefix("CFG ")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-able values (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg), default=str))


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
@dataclass
class StudyModels:
    """The diffusion model (generation) and the surrogate (scoring), each with its own DOS
    standardiser (they may differ if trained on different splits)."""

    diffusion: Any
    diffusion_std: Any
    surrogate: Any
    surrogate_std: Any
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_z(self) -> int:
        """Largest atomic number the diffusion model can generate."""
        cfg = getattr(self.diffusion, "model_cfg", None)
        return int(getattr(cfg, "max_z", MAX_Z))

    @property
    def timesteps(self) -> int:
        return int(self.diffusion.schedule.timesteps)


def load_study_models(checkpoint: str | Path, surrogate: str | Path, device: str = "cpu") -> StudyModels:
    """Load the diffusion checkpoint (kind ``diffusion``) and the surrogate checkpoint (kind
    ``surrogate``); raise :class:`CheckpointError` naming the file when either is wrong."""
    from dosmatgen.checkpoint import load_model

    for label, path in (("diffusion checkpoint", checkpoint), ("surrogate checkpoint", surrogate)):
        if path is None or not Path(path).is_file():
            raise CheckpointError(f"{label} {path} does not exist")
    diff, diff_std, diff_meta = load_model(checkpoint, device)
    if diff_meta.get("kind") != "diffusion":
        raise CheckpointError(f"{checkpoint} holds a {diff_meta.get('kind')!r} model, expected 'diffusion'")
    sur, sur_std, sur_meta = load_model(surrogate, device)
    if sur_meta.get("kind") != "surrogate":
        raise CheckpointError(f"{surrogate} holds a {sur_meta.get('kind')!r} model, expected 'surrogate'")
    if diff_std is None or sur_std is None:
        raise CheckpointError("both checkpoints must carry their DOS standardiser "
                              f"(diffusion: {diff_std is not None}, surrogate: {sur_std is not None})")
    return StudyModels(diff, diff_std, sur, sur_std,
                       {"checkpoint": str(checkpoint), "surrogate": str(surrogate),
                        "diffusion_code": diff_meta.get("code"), "surrogate_code": sur_meta.get("code")})


# ---------------------------------------------------------------------------------------------
# specs and sampling
# ---------------------------------------------------------------------------------------------
def element_number(symbol: str | int, max_z: int = MAX_Z) -> int:
    """Atomic number of an element symbol (or number), checked against the model's type range."""
    from pymatgen.core.periodic_table import Element

    try:
        z = int(symbol) if str(symbol).isdigit() else Element(str(symbol).strip().capitalize()).Z
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"unknown element {symbol!r}") from exc
    if not 1 <= z <= max_z:
        raise ConfigError(f"element {symbol!r} (Z={z}) is outside the model's types 1..{max_z}")
    return z


def spec_fingerprint(*parts: Any) -> str:
    """Short hash identifying a study run (the name of its resumable work folder)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def sample_crystals(models: StudyModels, spec, cfg: SamplingConfig, seed: int, *, t0: int | None = None,
                    omega: float | None = None, desc: str = "sampling",
                    cache: str | Path | None = None) -> list[RawCrystal]:
    """The crystals of ``spec`` from the generation service
    (:func:`dosmatgen.generate.runner.generate`) with the study's sampler options, base seed
    ``seed`` and, when given, another CFG weight ``omega``; resumable with a ``cache`` folder."""
    from dosmatgen.generate.runner import generate

    options = cfg.sampler.replace(seed=int(seed), **({} if omega is None else {"omega": float(omega)}))
    gen = generate(models.diffusion, spec, options, t0=t0, cache=cache, progress=cfg.progress, desc=desc)
    return list(gen.items())


# ---------------------------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Candidate:
    """One generated crystal and what the study measured on it.

    ``record`` is None when the arrays could not be built into a crystal at all;
    ``invalid_reason`` is set (and the candidate excluded from DOS scores) when the crystal is
    not valid in the sense of :func:`dosmatgen.data.validity.validity_reason`.
    """

    candidate_id: str
    group: str
    record: CrystalRecord | None
    invalid_reason: str | None = None
    formula: str | None = None
    first_element: str | None = None
    dos_mae: float | None = None
    dos_mae_std: float | None = None
    cosine: float | None = None
    pred_dos: np.ndarray | None = None  # (400,) raw surrogate DOS of the first atom
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.record is not None and self.invalid_reason is None

    @property
    def num_atoms(self) -> int | None:
        return None if self.record is None else self.record.num_atoms

    def row(self) -> dict[str, Any]:
        """Flat per-candidate row (CSV / JSON)."""
        out = {"candidate_id": self.candidate_id, "group": self.group, "num_atoms": self.num_atoms,
               "valid": self.valid, "invalid_reason": self.invalid_reason, "formula": self.formula,
               "first_element": self.first_element, "dos_mae": _round(self.dos_mae),
               "dos_mae_std": _round(self.dos_mae_std), "cosine": _round(self.cosine)}
        out.update({k: _round(v) if isinstance(v, float) else v for k, v in self.extra.items()
                    if not k.startswith("_")})
        return out

    def structure_json(self) -> dict[str, Any] | None:
        if self.record is None:
            return None
        return {"atomic_numbers": self.record.atomic_numbers.tolist(),
                "frac_coords": np.round(self.record.frac_coords, 6).tolist(),
                "lattice": np.round(self.record.lattice, 6).tolist()}


def finite_mean(values: Iterable[float | None]) -> float | None:
    """Mean of the finite values (None when there are none)."""
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def finite_median(values: Iterable[float | None]) -> float | None:
    """Median of the finite values (None when there are none): robust to MLFF outliers."""
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def _round(v: Any, nd: int = 5) -> Any:
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), nd)
    return v


def make_candidates(raw: Sequence[RawCrystal], group: str, prefix: str) -> list[Candidate]:
    """Candidates from sampled arrays; validity as in :mod:`dosmatgen.evaluate.metrics`."""
    from dosmatgen.data.validity import validity_reason

    out = []
    for i, (z, x, lat) in enumerate(raw):
        cid = f"{prefix}-{i:04d}"
        s, why = validity_reason(z, x, lat)
        rec = None
        if s is not None:
            try:
                rec = CrystalRecord(cid, np.asarray(z), np.mod(np.asarray(x), 1.0), np.asarray(lat),
                                    provenance={"source": "dosmatgen-generated", "group": group})
            except DataError as exc:
                why = why or f"record:{exc}"
        c = Candidate(cid, group, rec, why)
        if rec is not None:
            c.formula = rec.formula
            c.first_element = _symbol(int(rec.atomic_numbers[0]))
        out.append(c)
    return out


def _symbol(z: int) -> str:
    from pymatgen.core.periodic_table import Element

    return Element.from_Z(z).symbol


# ---------------------------------------------------------------------------------------------
# formation energies
# ---------------------------------------------------------------------------------------------
def elements_with_references() -> frozenset[str]:
    """Elements for which :mod:`dosmatgen.evaluate.formation` can build an elemental reference
    (ASE's dcdft set or pymatgen's MP elemental energies)."""
    global _REF_ELEMENTS
    if _REF_ELEMENTS is None:
        from ase.collections import dcdft

        from dosmatgen.evaluate.formation import mp_elemental_energies

        _REF_ELEMENTS = frozenset(dcdft.names) | frozenset(mp_elemental_energies())
    return _REF_ELEMENTS


_REF_ELEMENTS: frozenset[str] | None = None


def formation_energies(candidates: Sequence[Candidate], raws: Sequence[RawCrystal], out_json: Path, *,
                       mlff: str, workers: int, fmax: float, steps: int, refs_cache: str | None, device: str,
                       calc: Any, progress: bool, input_name: str, relaxer: str = "ase") -> dict[str, Any]:
    """MLFF formation energies (:func:`dosmatgen.evaluate.formation.compute_formation_energies`)
    of the valid candidates whose elements all have an elemental reference and are known to the
    MLFF (SevenNet's ``type_map``; other calculators are not checked); fills
    ``extra['ef_unrelaxed'|'ef_relaxed'|'relax_status'|'relax_converged']`` (``relax_status`` is
    ``invalid`` or ``unsupported_element:<els>`` for the ones not computed). Returns the formation output."""
    from dosmatgen.evaluate.formation import FormationItem, compute_formation_energies

    known = set(elements_with_references())
    if calc is None:
        from dosmatgen.evaluate.mlff import get_calculator

        calc_for_check = get_calculator(mlff, device=device)
        if workers <= 1:
            calc = calc_for_check
    else:
        calc_for_check = calc
    type_map = getattr(calc_for_check, "type_map", None)  # SevenNet: the elements the model knows
    if isinstance(type_map, dict) and type_map:
        known &= {_symbol(int(z)) for z in type_map if 1 <= int(z) <= MAX_Z}
    items = []
    for c, (z, x, lat) in zip(candidates, raws):
        c.extra.update({"ef_unrelaxed": None, "ef_relaxed": None, "relax_converged": None})
        if not c.valid:
            c.extra["relax_status"] = "invalid"
            continue
        missing = sorted({_symbol(int(v)) for v in z} - known)
        if missing:
            c.extra["relax_status"] = "unsupported_element:" + ",".join(missing)
            continue
        items.append(FormationItem(c.candidate_id, c.group, z, x, lat))
    if not items:
        return {"rows": [], "status_counts": {}, "references": {}}
    form = compute_formation_energies(items, out_json, mlff=mlff, workers=1 if calc is not None else workers,
                                      fmax=fmax, steps=steps, refs_cache=refs_cache, device=device, calc=calc,
                                      input_name=input_name, progress=progress, relaxer=relaxer)
    by_id = {r["id"]: r for r in form["rows"]}
    for c in candidates:
        r = by_id.get(c.candidate_id)
        if r is not None:
            c.extra.update({"ef_unrelaxed": r.get("ef_unrelaxed"), "ef_relaxed": r.get("ef_relaxed"),
                            "relax_status": r.get("status"), "relax_converged": r.get("converged")})
    return form


# ---------------------------------------------------------------------------------------------
# DOS scoring with the surrogate
# ---------------------------------------------------------------------------------------------
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


def score_first_atom(models: StudyModels, candidates: Sequence[Candidate], target_raw: np.ndarray,
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


# ---------------------------------------------------------------------------------------------
# group statistics
# ---------------------------------------------------------------------------------------------
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


def _nanmean(values: Iterable[float | None]) -> float | None:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _nanmedian(values: Iterable[float | None]) -> float | None:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def group_summary(group: str, cands: Sequence[Candidate]) -> dict[str, Any]:
    """Statistics shared by every study for one group of candidates."""
    n = len(cands)
    valid = [c for c in cands if c.valid]
    return {
        "group": group,
        "n_generated": n,
        "n_valid": len(valid),
        "composition_diversity": _round(composition_diversity((c.formula for c in cands if c.record), n)),
        "n_unique_formulas": len({c.formula for c in cands if c.formula}),
        "first_atom_elements": format_distribution(element_distribution(c.first_element for c in cands)),
        "mean_dos_mae": _round(_nanmean(c.dos_mae for c in valid)),
        "median_dos_mae": _round(_nanmedian(c.dos_mae for c in valid)),
        "mean_dos_mae_std": _round(_nanmean(c.dos_mae_std for c in valid)),
        "mean_cosine": _round(_nanmean(c.cosine for c in valid)),
        "best_cosine": _round(max((c.cosine for c in valid if c.cosine is not None), default=None)),
    }


def best_candidate(cands: Sequence[Candidate], key: str = "dos_mae") -> Candidate | None:
    """Lowest ``dos_mae`` (or highest ``cosine``) among valid scored candidates; ties by id."""
    scored = [c for c in cands if c.valid and getattr(c, key) is not None]
    if not scored:
        return None
    if key == "cosine":
        return min(scored, key=lambda c: (-c.cosine, c.candidate_id))
    return min(scored, key=lambda c: (getattr(c, key), c.candidate_id))


def cand_value(c: Candidate | None, key: str) -> float | None:
    """A rounded score of ``c`` (None when ``c`` or the score is missing)."""
    v = None if c is None else getattr(c, key)
    return _round(v)


def highlight(c: Candidate, label: str, **extra: Any) -> dict[str, Any]:
    """What a figure needs about one candidate: its structure and first-atom DOS."""
    out = {"label": label, "candidate_id": c.candidate_id, "group": c.group, "formula": c.formula,
           "first_element": c.first_element, "dos_mae": _round(c.dos_mae), "cosine": _round(c.cosine),
           "pred_dos": None if c.pred_dos is None else np.round(c.pred_dos.astype(float), 5).tolist(),
           "structure": c.structure_json()}
    out.update(extra)
    return out


# ---------------------------------------------------------------------------------------------
# writing outputs
# ---------------------------------------------------------------------------------------------
def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    cols = list(columns) if columns else _columns(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    cols = list(columns) if columns else _columns(rows)

    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1e4 else f"{v:.3g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def write_cif(path: Path, record: CrystalRecord) -> None:
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(record.to_structure()))
    with atomic_write(path, "w") as f:
        f.write(text)


def write_study(out_dir: str | Path, *, study: str, title: str, summary_rows: Sequence[dict[str, Any]],
                summary_columns: Sequence[str] | None, candidates: Sequence[Candidate],
                results: dict[str, Any], notes: Sequence[str] = (), extra_tables: dict[str, Any] | None = None,
                cif_filter: Any = None) -> Path:
    """Write a study's folder atomically:

    ``summary.csv`` / ``summary.md`` (one row per group, plus notes), ``candidates.csv`` (one row
    per candidate), ``results.json`` (config, target, summary, per-candidate rows, highlights for
    the figures), ``cifs/<group>/<candidate_id>.cif`` for every buildable candidate (or those
    accepted by ``cif_filter``), plus ``extra_tables`` name -> rows as ``<name>.csv``/``.md``.
    ``results`` gains the keys ``study`` and ``notes``.
    """
    out_dir = Path(out_dir)
    cand_rows = [c.row() for c in candidates]
    with staged_folder(out_dir) as stage:
        write_csv(stage / "summary.csv", summary_rows, summary_columns)
        md = [f"# {title}\n", markdown_table(summary_rows, summary_columns)]
        if notes:
            md.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
        for name, rows in (extra_tables or {}).items():
            write_csv(stage / f"{name}.csv", rows)
            md.append(f"\n## {name}\n\n" + markdown_table(rows))
            with atomic_write(stage / f"{name}.md", "w") as f:
                f.write(markdown_table(rows))
        with atomic_write(stage / "summary.md", "w") as f:
            f.write("\n".join(md))
        write_csv(stage / "candidates.csv", cand_rows)
        for c in candidates:
            if c.record is None or (cif_filter is not None and not cif_filter(c)):
                continue
            write_cif(stage / "cifs" / _safe(c.group) / f"{c.candidate_id}.cif", c.record)
            relaxed = c.extra.get("_relaxed_record")
            if relaxed is not None:
                write_cif(stage / "cifs" / _safe(c.group) / f"{c.candidate_id}-relaxed.cif", relaxed)
        results.update({"study": study, "notes": list(notes)})
        payload = dict(results)
        payload.update({"summary": list(summary_rows),
                        "candidates": [{k: v for k, v in r.items() if not k.startswith("_")} for r in cand_rows]})
        atomic_save_json(stage / "results.json", payload)
    return out_dir


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def read_results(path: str | Path) -> dict[str, Any]:
    """``results.json`` of a study folder (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise DataError(f"no study results at {p}")
    return json.loads(p.read_text())
