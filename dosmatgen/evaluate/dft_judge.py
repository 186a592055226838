"""Table 1 judged by DFT as well as by the surrogate (issue 37).

Table 1 (paper §3.1) scores a generated crystal by MAE(ŷ_gen, y): the surrogate's site DOS of the
generated crystal against the target y. A learned judge can be kinder than physics (its smooth
predictions sit near any typical target), so a fixed sample of the same crystals is also labelled
with the GPAW site-DOS engine that made the dataset (:class:`~dosmatgen.dos.gpaw_engine.GPAWSiteDOSEngine`,
unrelaxed, as Table 1 scores them) and three errors are reported on that sample:

* ``mae_surrogate_target`` -- MAE(ŷ_gen, y), the paper's judge;
* ``mae_dft_target``       -- MAE(DOS_DFT_gen, y), the DFT judge;
* ``mae_surrogate_dft``    -- MAE(ŷ_gen, DOS_DFT_gen), the surrogate's error on generated crystals
  (beside ``mae_yhat_y``, its error on the test structures themselves).

The sample (:func:`judge_subset`) is the first ``n`` valid generated crystals in test order, shared
evenly between the test split's sources (built-in prototypes and real MP-20 crystals), so the same
crystals are judged by both judges and on every rerun. Failed GPAW jobs (no setup, overlap, SCF,
timeout) are counted by kind, never dropped silently. Labels are cached one JSON per crystal, keyed
by the crystal and the protocol, so an interrupted run resumes.

Judgement JSON (``dosmatgen evaluate dft-judge --out FILE``)::

    {"format": "dosmatgen-dft-judge", "version": 1, "guidance", "t0", "n_requested",
     "rows": [{"index", "source_id", "source", "formula", "num_atoms", "min_distance" (Å), "status",
               "seconds", "fallback",
               "mae_surrogate_target", "mae_dft_target", "mae_surrogate_dft", "mae_yhat_y"}],
     "summary": {see :func:`summarise`}, "protocol": {...}, "generated": path, "command": str}
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.split import record_source
from dosmatgen.data.validity import min_periodic_distance, validity_reason
from dosmatgen.errors import DataError, DosmatgenError
from dosmatgen.io import atomic_save_json, atomic_write

FORMAT = "dosmatgen-dft-judge"
#: The three errors on the judged sample, in table order.
ERRORS: tuple[str, ...] = ("mae_surrogate_target", "mae_dft_target", "mae_surrogate_dft")
#: Kinds of failed GPAW job, matched in this order against the engine's message.
FAILURE_KINDS: tuple[tuple[str, str], ...] = (("no setup", "no_setup"), ("closer than", "overlap"),
                                              ("overlap", "overlap"), ("did not converge", "scf"),
                                              ("not positive definite", "basis"),
                                              ("timed out", "timeout"))


def judge_subset(items: Sequence[tuple[Any, Any, Any]], source_ids: Sequence[str], n: int) -> list[int]:
    """Indices of the first ``n`` valid crystals in test order, shared evenly between sources.

    Each source present gets ``n // k`` places (the first sources one more while ``n`` is not
    used up); a source with fewer valid crystals gives its places to none, so the sample is
    never padded with another source's crystals. Deterministic: the same set, the same subset.

    >>> ok = (np.array([14, 14]), np.array([[0, 0, 0], [.25, .25, .25]]), 5.43 * np.eye(3))
    >>> judge_subset([ok] * 4, ["builtin-a", "mp20-b", "builtin-c", "mp20-d"], 3)
    [0, 1, 2]
    """
    sources = [record_source(str(s)) for s in source_ids]
    order = list(dict.fromkeys(sources))
    quota = {s: n // len(order) + (i < n % len(order)) for i, s in enumerate(order)}
    picked: list[int] = []
    for i, item in enumerate(items):
        if quota[sources[i]] > 0 and validity_reason(*item)[1] is None:
            quota[sources[i]] -= 1
            picked.append(i)
    return picked


def failure_kind(status: str) -> str:
    """The kind of a failed job's status (:data:`FAILURE_KINDS`, else ``other``).

    >>> failure_kind("failed: x: GPAW timed out: used its CPU-time limit of 300 s")
    'timeout'
    """
    return next((kind for text, kind in FAILURE_KINDS if text in status), "other")


def crystal_key(record: CrystalRecord, protocol: dict[str, Any]) -> str:
    """Cache key of one label: the crystal's arrays and the engine's protocol."""
    h = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode())
    for a in (record.atomic_numbers, record.frac_coords, record.lattice):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()[:20]


def label_crystals(records: Sequence[CrystalRecord], engine: Any, cache_dir: str | Path, workers: int = 1,
                   report: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """GPAW site DOS of each record, ``workers`` jobs at a time, cached per crystal in ``cache_dir``.

    Returns one dict per record: ``status`` (``ok`` or ``failed: <message>``), ``dos`` (a list,
    when ok), ``seconds``, ``fallback`` (the engine's fallback basis was used). A cached success is always reused; a cached failure only when
    it had at least the current CPU-time budget and the same fallback basis (a longer budget or
    another fallback retries it). ``report`` gets a
    progress line with the ETA after each crystal.
    """
    cache = Path(cache_dir)
    protocol = engine.protocol()
    retry = {"timeout_s": float(getattr(engine, "timeout_s", 0.0)),
             "fallback_basis": getattr(engine, "fallback_basis", None)}
    start, done = time.time(), [0]

    def one(rec: CrystalRecord) -> dict[str, Any]:
        path = cache / f"{crystal_key(rec, protocol)}.json"
        cached = json.loads(path.read_text()) if path.exists() else None
        if cached and (cached["status"] == "ok" or (cached.get("timeout_s", 0.0) >= retry["timeout_s"]
                                                    and cached.get("fallback_basis") == retry["fallback_basis"])):
            out = cached
        else:
            tic = time.time()
            try:
                res = engine.compute(rec)
                out = {"status": "ok", "dos": np.asarray(res.dos).tolist(), "seconds": float(res.seconds),
                       "fallback": res.protocol.get("basis") != protocol.get("basis")}
            except DosmatgenError as exc:
                out = {"status": f"failed: {exc}"[:300], "seconds": time.time() - tic}
            except Exception as exc:  # an engine bug must not lose the other crystals' labels
                out = {"status": f"failed: {type(exc).__name__}: {exc}"[:300], "seconds": time.time() - tic}
            out.update(retry)
            atomic_save_json(path, out)
        done[0] += 1
        if report is not None:
            left = (time.time() - start) / done[0] * (len(records) - done[0]) / max(1, workers)
            report(f"[dft] {done[0]}/{len(records)} {rec.structure_id}: {out['status'][:60]} "
                   f"({out.get('seconds', 0):.0f} s); ETA {left / 60:.1f} min")
        return out

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, records))


def _mae(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means, standard deviations and counts of :data:`ERRORS` over the rows judged by both.

    ``n_judged``: crystals with a DFT label (``n_fallback_basis`` of them with the engine's fallback
    basis, its first being over-complete for the cell); ``n_failed`` and ``failures`` (by
    :func:`failure_kind`): the others; ``closer_by_surrogate``: crystals the surrogate judged
    closer to the target than DFT did; ``cpu_hours``: the wall time of the sample's one-thread
    GPAW jobs (cache hits count their recorded time); ``median_min_distance_judged|failed``: the
    closest pair of atoms (Å), median over each group.
    """
    ok = [r for r in rows if r["status"] == "ok" and r["mae_surrogate_target"] is not None]
    judged = {id(r) for r in ok}
    out: dict[str, Any] = {"n_requested": len(rows), "n_judged": len(ok), "n_failed": len(rows) - len(ok),
                           "failures": {}, "closer_by_surrogate": sum(r["mae_surrogate_target"] < r["mae_dft_target"]
                                                                      for r in ok),
                           "n_fallback_basis": sum(bool(r.get("fallback")) for r in ok),
                           "cpu_hours": sum(float(r.get("seconds") or 0.0) for r in rows) / 3600.0}
    for r in rows:
        if id(r) not in judged:
            kind = failure_kind(r["status"]) if r["status"] != "ok" else "surrogate_failed"
            out["failures"][kind] = out["failures"].get(kind, 0) + 1
    for part, group in (("judged", ok), ("failed", [r for r in rows if id(r) not in judged])):
        dist = [r["min_distance"] for r in group if r.get("min_distance") is not None]
        out[f"median_min_distance_{part}"] = float(np.median(dist)) if dist else None
    for name in ERRORS + ("mae_yhat_y",):
        vals = [r[name] for r in ok if r.get(name) is not None]
        out[name] = float(np.mean(vals)) if vals else None
        out[f"{name}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return out


def judge_rows(records: Sequence[CrystalRecord], labels: Sequence[dict[str, Any]], targets: Sequence[np.ndarray],
               predicted: Sequence[np.ndarray | None], predicted_ref: Sequence[np.ndarray | None],
               indices: Sequence[int], source_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One row per judged crystal: the three :data:`ERRORS` and the surrogate's error on the
    test structure itself (``mae_yhat_y``); DFT errors are None where the job failed."""
    rows = []
    for rec, lab, y, pred, pref, i, sid in zip(records, labels, targets, predicted, predicted_ref, indices,
                                               source_ids):
        dft = np.asarray(lab["dos"]) if lab["status"] == "ok" else None
        structure = rec.to_structure()
        rows.append({"index": int(i), "source_id": sid, "source": record_source(sid),
                     "formula": structure.composition.reduced_formula, "num_atoms": rec.num_atoms,
                     "min_distance": round(float(min_periodic_distance(structure)), 3),
                     "status": lab["status"], "seconds": lab.get("seconds"), "fallback": lab.get("fallback"),
                     "mae_surrogate_target": _mae(pred, y), "mae_dft_target": _mae(dft, y),
                     "mae_surrogate_dft": _mae(pred, dft), "mae_yhat_y": _mae(pref, y)})
    return rows


def judge_generated(gen: Any, references: dict[str, CrystalRecord], surrogate: Any, surrogate_std: Any,
                    engine: Any, n: int, cache_dir: str | Path, *, workers: int = 1,
                    report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The DFT-judged Table 1 entry of one generated set (the module doc's JSON, less ``command``).

    Args:
        gen: a :class:`~dosmatgen.generate.generated.GeneratedSet` (atom i conditioned on atom i).
        references: source id -> test record with its site DOS y.
        surrogate, surrogate_std: the Table 1 surrogate and its standardiser.
        engine: the GPAW engine (or anything with ``compute(record)`` and ``protocol()``).
        n: crystals to judge (:func:`judge_subset`).
        cache_dir: one JSON per labelled crystal (resumable).
    """
    from dosmatgen.model.surrogate import predict_site_dos

    items = list(gen.items())
    index = judge_subset(items, gen.source_ids, n)
    sids = [gen.source_ids[i] for i in index]
    records = [CrystalRecord(f"{sid}-gen{i}", np.asarray(items[i][0]), np.asarray(items[i][1]),
                             np.asarray(items[i][2]), None, {}) for i, sid in zip(index, sids)]
    refs = [references[s] for s in sids]
    pred, _ = predict_site_dos(surrogate, surrogate_std, [items[i] for i in index])
    pred_ref, _ = predict_site_dos(surrogate, surrogate_std, [(r.atomic_numbers, r.frac_coords, r.lattice)
                                                             for r in refs])
    labels = label_crystals(records, engine, cache_dir, workers, report)
    rows = judge_rows(records, labels, [r.dos for r in refs], pred, pred_ref, index, sids)
    meta = dict(gen.meta)
    return {"format": FORMAT, "version": 1, "guidance": meta.get("guidance"), "t0": meta.get("t0"),
            "n_requested": n, "rows": rows, "summary": summarise(rows), "protocol": engine.protocol(),
            "by_source": {s: summarise([r for r in rows if r["source"] == s])
                          for s in dict.fromkeys(r["source"] for r in rows)}}


def table_row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """One row of the judged table (the Table 1 entries and the studies' top candidates alike)."""
    row: dict[str, Any] = {"set": name}
    for k in ("n_requested", "n_judged", "n_failed", "n_fallback_basis"):
        row[k] = summary.get(k)
    for k in ERRORS + ("mae_yhat_y",):
        row[k], row[f"{k}_std"] = summary.get(k), summary.get(f"{k}_std")
    row["closer_by_surrogate"] = summary.get("closer_by_surrogate")
    row["failures"] = ";".join(f"{k}:{v}" for k, v in sorted(summary.get("failures", {}).items()))
    cpu = summary.get("cpu_hours")
    row["cpu_hours"] = None if cpu is None else round(cpu, 3)
    return row


def _cell(v: Any, sd: Any = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}" + (f" ± {sd:.3f}" if isinstance(sd, float) else "")
    return str(v)


def table_markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The judged table's Markdown lines: mean ± standard deviation over the crystals both judges scored."""
    lines = ["| set | judged / asked | surrogate judge | DFT judge | surrogate vs DFT | surrogate on targets "
             "| surrogate kinder | failed (kind:count) | GPAW core-h |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fallback = f" ({r['n_fallback_basis']} fallback basis)" if r.get("n_fallback_basis") else ""
        lines.append(f"| {r['set']} | {r['n_judged']} / {r['n_requested']}{fallback} | "
                     + " | ".join(_cell(r[k], r[f"{k}_std"]) for k in ERRORS + ("mae_yhat_y",))
                     + f" | {r['closer_by_surrogate']} of {r['n_judged']} | {r['failures'] or '—'} "
                     f"| {_cell(r['cpu_hours'])} |")
    return lines


#: What the judged table's columns mean (its Markdown preamble).
TABLE_NOTE = ("MAE in states/eV/site, mean ± standard deviation over the crystals GPAW labelled (unrelaxed, "
              "the dataset's protocol). Surrogate judge = MAE(ŷ_gen, y), the paper's; DFT judge = "
              "MAE(DOS_DFT_gen, y); surrogate vs DFT = the surrogate's error on these generated crystals; "
              "surrogate on targets = MAE(ŷ, y) on their test structures; surrogate kinder = crystals the "
              "surrogate put closer to the target than DFT did; GPAW core-h = wall time of one-thread jobs.")


def load_judgement(path: str | Path) -> dict[str, Any]:
    """A judgement JSON; :class:`~dosmatgen.errors.DataError` when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable judgement JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path}: not a {FORMAT} file (made by `dosmatgen evaluate dft-judge`)")
    return data


def write_judged_tables(paths: Sequence[str | Path], out_dir: str | Path) -> list[dict[str, Any]]:
    """``table1_dft_judge.csv|md`` (one row per judged set, per source below it) and
    ``claims_by_judge.md|json`` (:func:`dosmatgen.evaluate.claims.judge_claims`) in ``out_dir``."""
    from dosmatgen.evaluate.claims import write_judge_claims
    from dosmatgen.evaluate.tables import write_csv

    judged = sorted((load_judgement(p) for p in paths), key=lambda d: (d["guidance"] != "cfg", d["guidance"], d["t0"]))
    rows = [table_row(f"{d['guidance']}_T{d['t0']}", d["summary"]) for d in judged]
    parts = [table_row(f"{d['guidance']}_T{d['t0']} ({src})", s) for d in judged
             for src, s in d.get("by_source", {}).items() if len(d.get("by_source", {})) > 1]
    out = Path(out_dir)
    write_csv(out / "table1_dft_judge.csv", rows + parts)
    lines = ["# Table 1 judged twice: the surrogate and GPAW on the same generated crystals", "", TABLE_NOTE, "",
             *table_markdown(rows)]
    if parts:
        lines += ["", "## By source", "", *table_markdown(parts)]
    text = "\n".join(lines) + "\n"
    with atomic_write(out / "table1_dft_judge.md", "w") as f:
        f.write(text)
    write_judge_claims(rows, out)
    return rows
