"""Evaluation metrics of the paper's §3.1 (Tables 1 and 2) plus validity / uniqueness / novelty.

Every metric is a small class with a ``compute(...)`` method returning a :class:`MetricResult`:
the value, how many items went in, how many were used, and how many were excluded *and why*.
Nothing here raises on a bad generated structure (NaN coordinates, a flat lattice, overlapping
atoms): such a structure is scored invalid or excluded and counted.

Reductions (exact):

* :class:`DOSMAE` -- for structure s with N_s atoms and site DOS arrays ``p_s, q_s`` of shape
  (N_s, 400): ``mae_s = mean_{i<N_s} mean_{k<400} |p_s[i,k] - q_s[i,k]|`` (mean over the 400 bins
  of each atom, then mean over the atoms of the structure); the metric is the unweighted mean of
  ``mae_s`` over the structures that are not excluded. Units are those of the inputs; the project
  passes **raw** DOS (states/eV/site, i.e. after ``DOSStandardiser.inverse``), not standardised
  values. (The paper does not state its units; its surrogate reports 0.096.)
* :class:`StructureMatchRate` -- percentage of pairs (generated, test) that pymatgen's
  ``StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10)`` declares equal. A pair whose match runs
  past the per-pair timeout is *excluded* from numerator and denominator (the paper's Table 2
  footnote does this). A generated structure that cannot be built at all (NaN, zero volume,
  unknown element) counts as a non-match and is reported under ``counts``.
* :class:`CompositionMatchRate` -- percentage of pairs whose reduced formulas are equal; a
  generated structure that cannot be built counts as a non-match.
* :class:`ElementAccuracy` -- percentage of atoms, pooled over all structures, whose generated
  element equals the element of the test atom whose DOS conditioned them (atom i against atom i:
  ``100 * sum_s correct_s / sum_s N_s``). Not in the paper; it asks directly whether the per-atom
  DOS condition fixes each atom's element (composition match cannot: a permutation of the right
  elements matches the composition with every atom wrong). Scored on atomic-number arrays, so an
  unbuildable crystal is scored from its types like any other.
* :class:`Validity` -- percentage of generated structures that can be built, have volume
  > 0.1 Å^3 per atom and no two atoms (periodic images included) closer than 0.5 Å.
* :class:`Uniqueness` -- among valid structures, ``n_distinct / n_valid`` in percent, where two
  structures are the same if they have the same reduced formula and StructureMatcher matches them.
* :class:`Novelty` -- among valid structures, the percentage that match no training structure of
  the same reduced formula.

A match that times out in Uniqueness/Novelty counts as "not equal" and is reported in ``counts``.
Timeouts use ``signal.setitimer`` inside the process that runs the match (the main thread, or a
worker process of a ``spawn`` pool when ``workers > 1``).
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from dosmatgen.data.schema import MAX_Z
from dosmatgen.data.validity import validity_reason

#: Table 2 tolerances (paper §3.1).
MATCHER_KWARGS: dict[str, float] = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}
#: Default per-pair StructureMatcher timeout in seconds.
DEFAULT_TIMEOUT_S: float = 10.0


@dataclass
class MetricResult:
    """Value of one metric and its bookkeeping.

    Attributes:
        name: metric name.
        value: the metric (``None`` when no item could be used).
        unit: ``"%"`` for rates, ``"states/eV/site"`` (or the inputs' unit) for MAEs.
        n_total: items given.
        n_used: items in the denominator.
        excluded: reason -> count of items left out of the denominator.
        counts: other counts (matches, invalid-counted-as-miss, timeouts ...).
    """

    name: str
    value: float | None
    unit: str
    n_total: int
    n_used: int
    excluded: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "n_total": self.n_total,
                "n_used": self.n_used, "n_excluded": int(sum(self.excluded.values())),
                "excluded": dict(self.excluded), "counts": dict(self.counts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MetricResult":
        return cls(d["name"], d["value"], d["unit"], int(d["n_total"]), int(d["n_used"]),
                   dict(d.get("excluded", {})), dict(d.get("counts", {})))


class DOSMAE:
    """Table 1 MAE: per-atom mean over the 400 bins, mean over atoms of a structure, then mean
    over structures (see the module docstring). ``None`` predictions are excluded with the
    reason given in ``reasons`` (default ``"prediction_failed"``)."""

    name = "dos_mae"

    def __init__(self, unit: str = "states/eV/site") -> None:
        self.unit = unit

    @staticmethod
    def per_structure(pred: np.ndarray, target: np.ndarray) -> float:
        """``mean_i mean_k |pred[i,k] - target[i,k]|`` for one structure."""
        return float(np.mean(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64)), axis=1)))

    def compute(self, pred: Sequence[np.ndarray | None], target: Sequence[np.ndarray | None],
                reasons: Sequence[str | None] | None = None) -> MetricResult:
        if len(pred) != len(target):
            raise ValueError(f"DOSMAE: {len(pred)} predictions but {len(target)} targets")
        excluded: Counter = Counter()
        values = []
        for i, (p, q) in enumerate(zip(pred, target)):
            if p is None or q is None:
                why = (reasons[i] if reasons is not None and reasons[i] else None) or (
                    "prediction_failed" if p is None else "target_missing")
                excluded[why] += 1
                continue
            p, q = np.asarray(p), np.asarray(q)
            if p.shape != q.shape:
                excluded["shape_mismatch"] += 1
                continue
            if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
                excluded["non_finite_dos"] += 1
                continue
            values.append(self.per_structure(p, q))
        value = float(np.mean(values)) if values else None
        return MetricResult(self.name, value, self.unit, len(pred), len(values), dict(excluded))


class _Timeout(Exception):
    """A StructureMatcher call ran past its per-pair timeout."""
    pass


def _on_alarm(signum, frame):  # pragma: no cover - exercised through timed_fit
    raise _Timeout()


def _make_matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**MATCHER_KWARGS)


def lll_reduced(structure):
    """The same crystal on its LLL-reduced basis (fractional coordinates wrapped into [0, 1)).

    :func:`timed_fit` matches these: pymatgen's ``StructureMatcher`` Niggli-reduces every
    structure, and ``Lattice.get_niggli_reduced_lattice`` ends with ``find_mapping`` on the
    *input* basis, whose ``get_points_in_sphere`` enumerates an image box that grows with the
    skew of that basis -- one C call, minutes or more for a badly skewed generated cell (lattice
    vectors of hundreds of Å around a 5 Å reduced cell), which the ``SIGALRM`` timeout cannot
    interrupt. The LLL basis is short and nearly orthogonal, so that search stays small; the
    crystal, and so the match, is the same."""
    try:
        return structure.get_reduced_structure(reduction_algo="LLL")
    except Exception:  # let the matcher meet (and count) whatever is wrong with it
        return structure


def timed_fit(s1, s2, timeout_s: float | None, matcher=None) -> str:
    """``"match"``, ``"no_match"``, ``"timeout"`` or ``"error"`` for one pair (matched on their
    LLL-reduced bases, :func:`lll_reduced`).

    The timeout is enforced with ``SIGALRM`` when called from a main thread; elsewhere it runs
    without a timeout."""
    matcher = matcher or _make_matcher()
    use_alarm = bool(timeout_s) and threading.current_thread() is threading.main_thread()
    old = None
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, float(timeout_s))
    try:
        return "match" if matcher.fit(lll_reduced(s1), lll_reduced(s2)) else "no_match"
    except _Timeout:
        return "timeout"
    except Exception:
        return "error"
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def _fit_task(task):
    s1, s2, timeout_s = task
    return timed_fit(s1, s2, timeout_s)


def _first_match_task(task):
    """Index of the first candidate matching the query, or -1; plus the number of timeouts."""
    query, candidates, timeout_s = task
    matcher = _make_matcher()
    timeouts = 0
    for j, cand in enumerate(candidates):
        out = timed_fit(query, cand, timeout_s, matcher)
        if out == "match":
            return j, timeouts
        timeouts += out == "timeout"
    return -1, timeouts


def _run_tasks(fn, tasks: list, workers: int, desc: str, progress: bool, unit: str = "pair") -> list:
    """``fn`` over ``tasks`` in ``workers`` spawned processes (in order), with a progress bar
    showing ``unit``s per second."""
    if workers <= 1 or len(tasks) < 2:
        return [fn(t) for t in tqdm(tasks, desc=desc, unit=unit, disable=not progress)]
    from dosmatgen.threads import single_threaded_children

    ctx = mp.get_context("spawn")
    with single_threaded_children():
        pool = ctx.Pool(workers)
    with pool:
        return list(tqdm(pool.imap(fn, tasks, chunksize=4), total=len(tasks), desc=desc, unit=unit,
                         disable=not progress))


class StructureMatchRate:
    """Table 2 structure match rate in percent (tolerances :data:`MATCHER_KWARGS`).

    ``compute(generated, reference)`` takes two equal-length sequences; a generated entry is a
    pymatgen ``Structure`` or ``None`` (could not be built: counts as a non-match). Pairs that
    time out are excluded (reason ``"timeout"``); pairs where pymatgen raises are excluded too
    (reason ``"matcher_error"``)."""

    name = "structure_match_rate"

    def __init__(self, timeout_s: float | None = DEFAULT_TIMEOUT_S, workers: int = 1, progress: bool = False):
        self.timeout_s, self.workers, self.progress = timeout_s, workers, progress

    def outcomes(self, generated: Sequence[Any], reference: Sequence[Any]) -> list[str]:
        """Per pair: ``"match"``, ``"no_match"``, ``"timeout"``, ``"error"`` or ``"unbuildable"``."""
        if len(generated) != len(reference):
            raise ValueError(f"StructureMatchRate: {len(generated)} generated but {len(reference)} references")
        idx = [i for i, g in enumerate(generated) if g is not None]
        got = _run_tasks(_fit_task, [(generated[i], reference[i], self.timeout_s) for i in idx],
                         self.workers, "structure match", self.progress)
        out = ["unbuildable"] * len(generated)
        for i, o in zip(idx, got):
            out[i] = o
        return out

    def from_outcomes(self, outcomes: Sequence[str]) -> MetricResult:
        c = Counter(outcomes)
        excluded = {k: v for k, v in {"timeout": c["timeout"], "matcher_error": c["error"]}.items() if v}
        n_used = len(outcomes) - sum(excluded.values())
        value = 100.0 * c["match"] / n_used if n_used else None
        return MetricResult(self.name, value, "%", len(outcomes), n_used, excluded,
                            {"matched": c["match"], "unbuildable_counted_as_miss": c["unbuildable"]})

    def compute(self, generated: Sequence[Any], reference: Sequence[Any]) -> MetricResult:
        return self.from_outcomes(self.outcomes(generated, reference))


class CompositionMatchRate:
    """Table 2 composition match rate in percent: reduced formula of the generated structure
    equals that of the reference. ``None`` generated entries count as non-matches."""

    name = "composition_match_rate"

    def compute(self, generated: Sequence[Any], reference: Sequence[Any]) -> MetricResult:
        return self.from_formulas([None if g is None else g.composition.reduced_formula for g in generated],
                                  [r.composition.reduced_formula for r in reference])

    def from_formulas(self, generated: Sequence[str | None], reference: Sequence[str]) -> MetricResult:
        """The rate from reduced formulas (``None``: nothing to compare, a non-match), e.g. those
        of :func:`reduced_formula` for a list of elements that is not a structure."""
        if len(generated) != len(reference):
            raise ValueError(f"CompositionMatchRate: {len(generated)} generated but {len(reference)} references")
        matched = sum(g is not None and g == r for g, r in zip(generated, reference))
        n = len(generated)
        return MetricResult(self.name, 100.0 * matched / n if n else None, "%", n, n, {},
                            {"matched": matched, "unbuildable_counted_as_miss": sum(g is None for g in generated)})


def reduced_formula(atomic_numbers: Sequence[int] | np.ndarray) -> str | None:
    """pymatgen's reduced formula of a list of elements; ``None`` when it is empty or holds a Z
    outside 1..``MAX_Z``.

    >>> reduced_formula([8, 22, 8]), reduced_formula([11, 17, 11, 17]), reduced_formula([0, 8])
    ('TiO2', 'NaCl', None)
    """
    from pymatgen.core import Composition

    z = np.asarray(atomic_numbers).reshape(-1)
    if z.size == 0 or np.any(z < 1) or np.any(z > MAX_Z):
        return None
    return Composition(dict(Counter(int(v) for v in z))).reduced_formula


class ElementAccuracy:
    """Per-atom element accuracy in percent (not in the paper): atom i of a generated crystal
    against atom i of its reference, the test atom whose DOS conditioned it (the regenerated
    crystal keeps the test crystal's atom order, :mod:`dosmatgen.evaluate.regenerate`).

    ``compute(generated, reference)`` takes two equal-length sequences of atomic-number arrays,
    one per structure. The value is pooled over atoms, ``100 * sum_s correct_s / sum_s N_s`` with
    ``N_s`` the reference's atom count, so ``n_total = n_used`` = atoms, not structures. It reads
    types only: a crystal whose coordinates or lattice are broken (not buildable, invalid) is
    scored from its types like any other; a Z outside 1..100 is simply wrong. A generated entry
    that is ``None`` or has another atom count than its reference has no atom-to-atom pairing:
    all of its reference atoms count as wrong (``counts["atom_count_mismatch_counted_as_miss"]``
    structures). Other counts: ``atoms_correct``, ``atoms_total``, ``structures``,
    ``structures_all_correct``.

    >>> r = ElementAccuracy().compute([np.array([22, 8, 8]), np.array([11, 17])],
    ...                               [np.array([8, 22, 8]), np.array([11, 17])])
    >>> round(r.value, 1), r.counts["atoms_correct"], r.counts["atoms_total"], r.counts["structures_all_correct"]
    (60.0, 3, 5, 1)
    """

    name = "element_accuracy"

    @staticmethod
    def per_structure(generated: np.ndarray | None, reference: np.ndarray) -> int | None:
        """Atoms of one structure with the reference's element; ``None`` when the atom counts differ."""
        ref = np.asarray(reference).reshape(-1)
        if generated is None:
            return None
        gen = np.asarray(generated).reshape(-1)
        if gen.shape != ref.shape:
            return None
        return int(np.sum(gen.astype(np.int64) == ref.astype(np.int64)))

    def compute(self, generated: Sequence[np.ndarray | None], reference: Sequence[np.ndarray]) -> MetricResult:
        if len(generated) != len(reference):
            raise ValueError(f"ElementAccuracy: {len(generated)} generated but {len(reference)} references")
        correct = total = all_correct = mismatched = 0
        for g, r in zip(generated, reference):
            n = int(np.asarray(r).size)
            k = self.per_structure(g, r)
            if k is None:
                mismatched += 1
                k = 0
            correct += k
            total += n
            all_correct += int(k == n)
        return MetricResult(self.name, 100.0 * correct / total if total else None, "%", total, total, {},
                            {"atoms_correct": correct, "atoms_total": total, "structures": len(reference),
                             "structures_all_correct": all_correct,
                             "atom_count_mismatch_counted_as_miss": mismatched})


def _group_row(z: int) -> tuple[int | None, int]:
    from pymatgen.core.periodic_table import Element

    e = Element.from_Z(int(z))
    return e.group, e.row


class HomologueOnlyMiss:
    """Crystals wrong only by group homologues, in percent of the crystals (issue 35; not in the
    paper): the generated types differ from the reference's at one atom or more, and at every such
    atom the two elements share a periodic-table group and sit in different periods (Br for I, Ca
    for Ba). Such a crystal has the right chemistry up to the period; resolving the period would
    turn it into a composition match. Atom-count mismatches are not counted.

    >>> r = HomologueOnlyMiss().compute([np.array([35, 11]), np.array([17, 11]), np.array([8, 11])],
    ...                                 [np.array([53, 11]), np.array([17, 11]), np.array([16, 12])])
    >>> r.value, r.counts
    (33.333333333333336, {'homologue_only': 1, 'all_correct': 1, 'other_miss': 1})
    """

    name = "homologue_only_miss"

    @staticmethod
    def classify(generated: np.ndarray, reference: np.ndarray) -> str:
        """``"all_correct"``, ``"homologue_only"`` or ``"other_miss"`` for one aligned pair."""
        g, r = np.asarray(generated).reshape(-1), np.asarray(reference).reshape(-1)
        if g.shape != r.shape or np.any((g < 1) | (g > 118)):
            return "other_miss"
        wrong = [(int(a), int(b)) for a, b in zip(g, r) if a != b]
        if not wrong:
            return "all_correct"
        for a, b in wrong:
            (ga, pa), (gb, pb) = _group_row(a), _group_row(b)
            if ga is None or ga != gb or pa == pb:
                return "other_miss"
        return "homologue_only"

    def compute(self, generated: Sequence[np.ndarray | None], reference: Sequence[np.ndarray]) -> MetricResult:
        kinds = Counter("other_miss" if g is None else self.classify(g, r) for g, r in zip(generated, reference))
        n = len(reference)
        counts = {k: kinds.get(k, 0) for k in ("homologue_only", "all_correct", "other_miss")}
        return MetricResult(self.name, 100.0 * counts["homologue_only"] / n if n else None, "%", n, n, {}, counts)


class EqualDOSPairsSplit:
    """Site pairs of one reference crystal with nearly equal target DOS (mean |Δ| below
    ``tolerance`` states/eV/site) and one element, that the generated crystal gives two elements,
    in percent of such pairs (issue 35; not in the paper).

    >>> dos = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 3.0]])
    >>> r = EqualDOSPairsSplit().compute([np.array([8, 16, 8])], [np.array([8, 8, 8])], [dos])
    >>> r.value, r.counts
    (100.0, {'pairs': 1, 'split': 1})
    """

    name = "equal_dos_pairs_split"

    def __init__(self, tolerance: float = 0.02) -> None:
        self.tolerance = tolerance

    def pairs(self, reference: np.ndarray, dos: np.ndarray) -> list[tuple[int, int]]:
        """The index pairs ``i < j`` of one crystal with nearly equal DOS and one element."""
        r, d = np.asarray(reference).reshape(-1), np.asarray(dos, dtype=np.float64)
        diff = np.abs(d[:, None, :] - d[None, :, :]).mean(-1)
        return [(i, j) for i in range(len(r)) for j in range(i + 1, len(r))
                if r[i] == r[j] and diff[i, j] < self.tolerance]

    def compute(self, generated: Sequence[np.ndarray | None], reference: Sequence[np.ndarray],
                dos: Sequence[np.ndarray]) -> MetricResult:
        pairs = split = 0
        for g, r, d in zip(generated, reference, dos):
            for i, j in self.pairs(r, d):
                pairs += 1
                gen = None if g is None else np.asarray(g).reshape(-1)
                split += int(gen is None or gen.shape != np.asarray(r).shape or gen[i] != gen[j])
        return MetricResult(self.name, 100.0 * split / pairs if pairs else None, "%", pairs, pairs, {},
                            {"pairs": pairs, "split": split})


class Validity:
    """Percentage of generated structures that are valid (see :func:`validity_reason`).

    ``compute(items)`` takes ``(atomic_numbers, frac_coords, lattice)`` triples; ``counts`` holds
    the number of invalid structures per reason."""

    name = "validity"

    def compute(self, items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> MetricResult:
        reasons = Counter(validity_reason(z, x, lat)[1] for z, x, lat in items)
        n_valid = reasons.pop(None, 0)
        n = len(items)
        return MetricResult(self.name, 100.0 * n_valid / n if n else None, "%", n, n, {},
                            {"valid": n_valid, **{f"invalid_{k}": v for k, v in reasons.items()}})


def _bucket(structures: Iterable[tuple[int, Any]]) -> dict[str, list[tuple[int, Any]]]:
    out: dict[str, list] = defaultdict(list)
    for i, s in structures:
        out[s.composition.reduced_formula].append((i, s))
    return out


class Uniqueness:
    """Percentage of distinct structures among the valid ones (``None`` = invalid, excluded)."""

    name = "uniqueness"

    def __init__(self, timeout_s: float | None = DEFAULT_TIMEOUT_S, progress: bool = False):
        self.timeout_s, self.progress = timeout_s, progress

    def compute(self, structures: Sequence[Any]) -> MetricResult:
        valid = [(i, s) for i, s in enumerate(structures) if s is not None]
        matcher = _make_matcher()
        n_distinct, timeouts = 0, 0
        for _, group in tqdm(_bucket(valid).items(), desc="uniqueness", disable=not self.progress):
            reps: list = []
            for _, s in group:
                for r in reps:
                    out = timed_fit(s, r, self.timeout_s, matcher)
                    timeouts += out == "timeout"
                    if out == "match":
                        break
                else:  # no representative matches: a new distinct structure
                    reps.append(s)
            n_distinct += len(reps)
        n_invalid = len(structures) - len(valid)
        value = 100.0 * n_distinct / len(valid) if valid else None
        return MetricResult(self.name, value, "%", len(structures), len(valid),
                            {"invalid": n_invalid} if n_invalid else {},
                            {"distinct": n_distinct, "timeouts_counted_as_distinct": timeouts})


class Novelty:
    """Percentage of valid generated structures that match no training structure.

    ``Novelty(training_structures).compute(generated)``; training structures are bucketed by
    reduced formula, so only same-formula pairs are matched."""

    name = "novelty"

    def __init__(self, training: Sequence[Any], timeout_s: float | None = DEFAULT_TIMEOUT_S,
                 workers: int = 1, progress: bool = False):
        self.buckets = {k: [s for _, s in v] for k, v in _bucket(enumerate(training)).items()}
        self.timeout_s, self.workers, self.progress = timeout_s, workers, progress

    def compute(self, structures: Sequence[Any]) -> MetricResult:
        valid = [s for s in structures if s is not None]
        tasks = [(s, self.buckets.get(s.composition.reduced_formula, []), self.timeout_s) for s in valid]
        results = _run_tasks(_first_match_task, tasks, self.workers, "novelty", self.progress, unit="crystal")
        n_novel = sum(1 for j, _ in results if j < 0)
        timeouts = sum(t for _, t in results)
        n_invalid = len(structures) - len(valid)
        value = 100.0 * n_novel / len(valid) if valid else None
        return MetricResult(self.name, value, "%", len(structures), len(valid),
                            {"invalid": n_invalid} if n_invalid else {},
                            {"novel": n_novel, "timeouts_counted_as_novel_pair": timeouts})
