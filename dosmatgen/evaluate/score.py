"""Score a regenerated test split (paper §3.1): Table 1 MAEs and Table 2 match rates, plus
element accuracy, validity, uniqueness and novelty, written as one metrics JSON per (guidance, T).

Quantities (all DOS in states/eV/site, see :class:`dosmatgen.evaluate.metrics.DOSMAE`):

* y       -- the test structure's site DOS (the condition), from the store;
* ŷ       -- the surrogate's prediction on the test structure;
* ŷ_gen   -- the surrogate's prediction on the generated structure (same atom order: atom i of the
             generated crystal was conditioned on atom i's DOS).

Metrics JSON (``dosmatgen evaluate score --out FILE``)::

    {"format": "dosmatgen-metrics", "version": 1,
     "guidance": "cfg"|"classifier"|"uncond"|"lookup", "t0": 200|500|1000 (null: lookup),
     "start": "prior"|"noised" (null: lookup),
     "n_structures": B,
     "metrics": {"mae_gen_y": R, "mae_gen_yhat": R, "mae_yhat_y": R,
                 "mae_mean_dos_y": R (baseline: the training-mean site DOS for every atom),
                 "structure_match_rate": R, "composition_match_rate": R,
                 "structure_match_rate_relaxed": R (only with ``relax_mlff``),
                 "element_accuracy": R (per atom, pooled; n_total = atoms),
                 "validity": R, "uniqueness": R, "novelty": R (absent when skipped)},
     "by_source": {source: {"n_structures": b, "metrics": {..the same, over that source's part..}}}
                  (empty unless the test structures come from more than one source, e.g.
                  ``prototypes`` and ``mp20``; :func:`dosmatgen.data.split.record_source`),
     "generated": {"path": .., "meta": {..the generated file's meta..}},
     "surrogate": {"path": .., "config": {..}},
     "settings": {"match_timeout_s", "workers", "n_training_structures", "relax_mlff" (only when used)},
     "seconds": {"surrogate", "structure_match", "structure_match_relaxed" (only when used), "uniqueness",
                 "novelty"}}

where each R is :meth:`MetricResult.to_dict` (``value, unit, n_total, n_used, n_excluded,
excluded{reason: count}, counts{...}``). Beside it, ``<FILE stem>.per_structure.csv`` has one row
per generated crystal: ``index, source_id, source, formula_gen, formula_ref, build_reason, validity_reason,
graph_reason, mae_gen_y, mae_gen_yhat, mae_yhat_y, structure_match, composition_match, n_atoms,
element_correct, element_accuracy``, and ``structure_match_relaxed`` with ``relax_mlff``
(``element_correct``: atoms with the conditioning atom's element; ``element_accuracy``: the same in
percent of ``n_atoms``).

The DOS-lookup baseline (:mod:`dosmatgen.evaluate.lookup`) writes the same format with
``guidance "lookup"``, ``t0``/``start`` null and only ``element_accuracy`` and
``composition_match_rate``; the unconditional model (``guidance "uncond"``) is scored here like
any generated set.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dosmatgen.data.split import record_source, source_parts
from dosmatgen.data.validity import build_structure, validity_reason
from dosmatgen.errors import DataError
from dosmatgen.evaluate import metrics as M
from dosmatgen.io import atomic_save_json, atomic_write

FORMAT = "dosmatgen-metrics"


def write_per_structure_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write one row per structure (the columns of the first row) through a temp file and a rename."""
    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def metrics_by_source(ids: Sequence[str], set_metrics: Callable[[Sequence[int]], dict[str, M.MetricResult]]
                      ) -> dict[str, dict[str, Any]]:
    """``by_source`` of a metrics JSON: ``set_metrics`` over each source's part of ``ids`` when they
    mix sources (e.g. prototypes and real MP-20 crystals: a row each in Tables 1-2), else ``{}``."""
    return {src: {"n_structures": len(part), "metrics": {k: v.to_dict() for k, v in set_metrics(part).items()}}
            for src, part in source_parts(ids).items()}


class _Scorer:
    """The per-crystal quantities of one generated set (surrogate DOS, structures, match outcomes,
    failure reasons) and the set metrics over any part of it; ``seconds`` times each stage."""

    def __init__(self, gen: Any, references: dict[str, Any], surrogate: Any, surrogate_std: Any,
                 training: Sequence[Any] | None, match_timeout_s: float, workers: int, batch_size: int,
                 device: str, progress: bool, relax_mlff: str | None = None) -> None:
        from dosmatgen.model.surrogate import predict_site_dos

        absent = [sid for sid in gen.source_ids if sid not in references]
        if absent:
            raise DataError(f"{len(absent)} generated structure(s) come from ids not in the store, e.g. {absent[0]!r} "
                            "(wrong --store or --split?)")
        self.training, self.match_timeout_s, self.workers, self.progress = training, match_timeout_s, workers, progress
        refs = [references[sid] for sid in gen.source_ids]
        self.y = [r.dos for r in refs]
        self.gen_items = list(gen.items())
        self.seconds: dict[str, float] = {}
        tic = time.perf_counter()
        self.yhat_gen, self.why_gen = predict_site_dos(surrogate, surrogate_std, self.gen_items, batch_size, device,
                                                       progress)
        self.yhat, self.why_ref = predict_site_dos(surrogate, surrogate_std,
                                                   [(r.atomic_numbers, r.frac_coords, r.lattice) for r in refs],
                                                   batch_size, device, progress)
        self.seconds["surrogate"] = time.perf_counter() - tic
        self.mean_dos = np.asarray(surrogate_std.mean, dtype=np.float64) if surrogate_std is not None else None
        self.built = [build_structure(*it) for it in self.gen_items]
        self.gen_structs = [s for s, _ in self.built]
        self.ref_structs = [r.to_structure() for r in refs]
        tic = time.perf_counter()
        self.sm = M.StructureMatchRate(match_timeout_s, workers, progress)
        self.outcomes = self.sm.outcomes(self.gen_structs, self.ref_structs)
        self.seconds["structure_match"] = time.perf_counter() - tic
        self.sm_relaxed, self.outcomes_relaxed = None, None
        if relax_mlff is not None:
            from dosmatgen.evaluate.relaxed_match import RelaxedStructureMatchRate, mlff_relax

            tic = time.perf_counter()
            self.sm_relaxed = RelaxedStructureMatchRate(mlff_relax(relax_mlff, device, progress=progress),
                                                        match_timeout_s, workers, progress)
            self.outcomes_relaxed = self.sm_relaxed.outcomes(self.gen_structs, self.ref_structs)
            self.seconds["structure_match_relaxed"] = time.perf_counter() - tic
        self.gen_types, self.ref_types = [z for z, _, _ in self.gen_items], [r.atomic_numbers for r in refs]
        self.validity = [validity_reason(*it)[1] for it in self.gen_items]
        self.valid_structs = [s if why is None else None for s, why in zip(self.gen_structs, self.validity)]
        self.reasons_ref = [f"reference_{r}" if r else None for r in self.why_ref]
        self.reasons_pair = [g if g is not None else (f"reference_{r}" if r is not None else None)
                             for g, r in zip(self.why_gen, self.why_ref)]

    def set_metrics(self, idx: Sequence[int], timed: bool = False) -> dict[str, M.MetricResult]:
        """Every set metric over the structures ``idx`` (the whole set, or one source's part);
        ``timed``: record the seconds of uniqueness and novelty."""
        def pick(v: Sequence[Any]) -> list[Any]:
            return [v[i] for i in idx]

        mae = M.DOSMAE()
        out: dict[str, M.MetricResult] = {}
        out["mae_gen_y"] = mae.compute(pick(self.yhat_gen), pick(self.y), pick(self.why_gen))
        out["mae_gen_yhat"] = mae.compute(pick(self.yhat_gen), pick(self.yhat), pick(self.reasons_pair))
        out["mae_yhat_y"] = mae.compute(pick(self.yhat), pick(self.y), pick(self.reasons_ref))
        # context, not in the paper: the error of always predicting the training set's mean site DOS
        if self.mean_dos is not None:
            out["mae_mean_dos_y"] = mae.compute([np.tile(self.mean_dos, (len(d), 1)) for d in pick(self.y)], pick(self.y))
        out["structure_match_rate"] = self.sm.from_outcomes(pick(self.outcomes))
        if self.sm_relaxed is not None:
            out["structure_match_rate_relaxed"] = self.sm_relaxed.from_outcomes(pick(self.outcomes_relaxed))
        out["composition_match_rate"] = M.CompositionMatchRate().compute(pick(self.gen_structs), pick(self.ref_structs))
        out["element_accuracy"] = M.ElementAccuracy().compute(pick(self.gen_types), pick(self.ref_types))
        out["homologue_only_miss"] = M.HomologueOnlyMiss().compute(pick(self.gen_types), pick(self.ref_types))
        out["equal_dos_pairs_split"] = M.EqualDOSPairsSplit().compute(pick(self.gen_types), pick(self.ref_types),
                                                                      pick(self.y))
        out["validity"] = M.Validity().compute(pick(self.gen_items))
        tic = time.perf_counter()
        out["uniqueness"] = M.Uniqueness(self.match_timeout_s, self.progress).compute(pick(self.valid_structs))
        if timed:
            self.seconds["uniqueness"] = time.perf_counter() - tic
        if self.training is not None:
            tic = time.perf_counter()
            novelty = M.Novelty(self.training, self.match_timeout_s, self.workers, self.progress)
            out["novelty"] = novelty.compute(pick(self.valid_structs))
            if timed:
                self.seconds["novelty"] = time.perf_counter() - tic
        return out

    def per_structure_rows(self, source_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of the per-structure CSV (see the module doc), one per generated crystal."""
        rows = []
        for i, sid in enumerate(source_ids):
            (s, bwhy), ref = self.built[i], self.ref_structs[i].composition.reduced_formula
            rows.append({
                "index": i, "source_id": sid, "source": record_source(sid),
                "formula_gen": s.composition.reduced_formula if s is not None else "", "formula_ref": ref,
                "build_reason": bwhy or "", "validity_reason": self.validity[i] or "",
                "graph_reason": self.why_gen[i] or "", "mae_gen_y": _mae_or_blank(self.yhat_gen[i], self.y[i]),
                "mae_gen_yhat": _mae_or_blank(self.yhat_gen[i], self.yhat[i]),
                "mae_yhat_y": _mae_or_blank(self.yhat[i], self.y[i]), "structure_match": self.outcomes[i],
                "composition_match": int(s is not None and s.composition.reduced_formula == ref),
                **element_columns(self.gen_types[i], self.ref_types[i]),
            })
            if self.outcomes_relaxed is not None:
                rows[-1]["structure_match_relaxed"] = self.outcomes_relaxed[i]
        return rows


def score_generated(gen: Any, references: dict[str, Any], surrogate: Any, surrogate_std: Any, *,
                    training: Sequence[Any] | None = None, match_timeout_s: float = M.DEFAULT_TIMEOUT_S,
                    workers: int = 1, batch_size: int = 128, device: str = "cpu", progress: bool = True,
                    generated_path: str | None = None, surrogate_path: str | None = None,
                    per_structure_csv: str | Path | None = None, relax_mlff: str | None = None) -> dict[str, Any]:
    """All metrics of one generated set.

    Args:
        gen: :class:`~dosmatgen.evaluate.regenerate.GeneratedSet`.
        references: source id -> test :class:`CrystalRecord` (with DOS).
        surrogate, surrogate_std: the trained surrogate and its DOS standardiser.
        training: training-split pymatgen structures for novelty (None: novelty skipped).
        match_timeout_s: per-pair StructureMatcher timeout.
        workers: processes for structure matching and novelty.
        relax_mlff: also the structure match after relaxing each composition-matched generated crystal
            with this MLFF (:mod:`dosmatgen.evaluate.relaxed_match`; not the paper's Table 2); None: not.
    """
    scorer = _Scorer(gen, references, surrogate, surrogate_std, training, match_timeout_s, workers, batch_size,
                     device, progress, relax_mlff)
    out = scorer.set_metrics(range(len(scorer.gen_items)), timed=True)
    if per_structure_csv is not None:
        write_per_structure_csv(per_structure_csv, scorer.per_structure_rows(gen.source_ids))
    meta = dict(gen.meta)
    return {
        "format": FORMAT, "version": 1, "guidance": meta.get("guidance"), "t0": meta.get("t0"),
        "start": meta.get("start"), "n_structures": len(gen),
        "metrics": {k: v.to_dict() for k, v in out.items()},
        "by_source": metrics_by_source(gen.source_ids, scorer.set_metrics),
        "generated": {"path": generated_path, "meta": meta},
        "surrogate": {"path": surrogate_path, "config": getattr(surrogate, "config", None)},
        "settings": {"match_timeout_s": match_timeout_s, "workers": workers, **({"relax_mlff": relax_mlff} if relax_mlff else {}),
                     "n_training_structures": None if training is None else len(training)},
        "seconds": scorer.seconds,
    }


def element_columns(generated: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Per-structure CSV columns of :class:`~dosmatgen.evaluate.metrics.ElementAccuracy`:
    ``n_atoms`` (reference), ``element_correct`` and ``element_accuracy`` (percent; blank when
    the atom counts differ).

    >>> element_columns(np.array([22, 8, 8, 8]), np.array([8, 22, 8, 8]))
    {'n_atoms': 4, 'element_correct': 2, 'element_accuracy': 50.0}
    """
    k = M.ElementAccuracy.per_structure(generated, reference)
    n = int(np.asarray(reference).size)
    return {"n_atoms": n, "element_correct": "" if k is None else k,
            "element_accuracy": "" if k is None else 100.0 * k / n}


def _mae_or_blank(p: np.ndarray | None, q: np.ndarray | None) -> Any:
    if p is None or q is None or np.shape(p) != np.shape(q):
        return ""
    return M.DOSMAE.per_structure(p, q)


def write_metrics(path: str | Path, result: dict[str, Any]) -> None:
    atomic_save_json(path, result)


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read a metrics JSON written by :func:`write_metrics`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read metrics file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path} is not a dosmatgen metrics file (no format '{FORMAT}')")
    return data
