"""Label built-in candidates on another machine whose Python has GPAW but not dosmatgen's stack.

The built-in build (:mod:`dev_scripts.builtin.build`) relaxes each candidate with an MLFF (torch) and
labels it with GPAW, both in one process pool.  A DFT host often has only the second: an
interpreter that imports gpaw.  Then the work splits in three, with the same protocol:

1. here, :func:`export_jobs`: build and MLFF-relax the next candidates not yet in the ledgers
   (of either source, :func:`dev_scripts.builtin.build.source_candidates`; MP-20 crystals are not
   relaxed) and write one GPAW job per crystal (``<id>.job.json``, what the engine would send
   its worker) and its record's provenance (``<id>.meta.json``);
2. there, the standalone worker, one process per core::

       python3 gpaw_worker.py ID.job.json ID.out.npz

3. here, :func:`ingest_jobs`: read every ``<id>.out.npz`` back into shards
   (``shard-offsite-00001.npz`` ...) and ``ledger-offsite.jsonl`` beside the build's own, so the
   next build and :func:`dosmatgen.data.store.merge_shards` see them.  Ingesting twice adds nothing.

A job whose first basis is over-complete is not ingested as a failure: the worker has no fallback
basis, and the next local build retries it with one.  A job without output (not run, killed) stays
to do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from dev_scripts.builtin.build import (_append_ledger, _next_shard_index, check_retry_text, command_line,
                                      relax_record, report_skipped, source_candidates, versions,
                                      without_retried_failures)
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.store import read_ledger
from dosmatgen.errors import DataError
from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS

LEDGER_NAME = "ledger-offsite.jsonl"
SHARD_PREFIX = "shard-offsite-"
#: Keys of a job's meta that its ledger entry repeats (a candidate's ``ledger_fields``).
LEDGER_KEYS: tuple[str, ...] = ("prototype", "source", "material_id")


def export_jobs(shards_dir: str | Path, jobs_dir: str | Path, n: int, skip: int = 0, seed: int = 0,
                n_max: int = 4000, mlff: str = "sevenn", fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS,
                engine_kwargs: dict[str, Any] | None = None, progress: bool = True, source: str = "prototypes",
                pool: str | Path | None = None, max_atoms: int | None = None,
                retry_failed: str | None = None) -> dict[str, int]:
    """Relax the candidates ``skip .. skip+n-1`` of ``source`` (``pool``, ``max_atoms``: see
    :func:`dev_scripts.builtin.build.source_candidates`) not yet in the ledgers of ``shards_dir`` (or
    recorded as failed for a reason containing ``retry_failed``, as in ``build``) and write their
    GPAW jobs into ``jobs_dir`` (those already there are kept).  Returns ``{"written", "failed"}``;
    a candidate whose relaxation or check fails is left out (the next local build records it)."""
    if int(n) < 1 or int(skip) < 0:  # a negative n would slice from the end: every job but one
        raise DataError(f"export-jobs needs n >= 1 and skip >= 0, got n={n}, skip={skip}")
    check_retry_text(retry_failed)
    from tqdm import tqdm

    from dosmatgen.dos.gpaw_engine import GPAWSiteDOSEngine
    from dosmatgen.evaluate.mlff import get_calculator, limit_threads

    limit_threads(1)  # as in the build's workers: one core, no OpenMP spinning against GPAW
    jobs_dir = Path(jobs_dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    ledger = without_retried_failures(read_ledger(shards_dir), retry_failed)
    cands, skipped = source_candidates(source, seed, n_max, pool, max_atoms)
    report_skipped(source, skipped)
    todo = [c for c in cands if c.structure_id not in ledger][skip:skip + n]
    if not any(c.relax for c in todo):
        mlff = "none"
    engine = GPAWSiteDOSEngine(**(engine_kwargs or {}))
    calc = get_calculator(mlff, device="cpu") if mlff != "none" else None
    counts = {"written": 0, "failed": 0}
    for cand in tqdm(todo, desc="relax + export", unit="struct", disable=not progress):
        if (jobs_dir / f"{cand.structure_id}.meta.json").exists():
            continue  # exported by an earlier run (the meta file is written last)
        t0 = time.time()
        try:
            rec = cand.build()
            if calc is not None and cand.relax:
                rec = relax_record(rec, calc, fmax, steps, mlff)
            engine.check(rec)
        except Exception as exc:  # noqa: BLE001 - left for the local build, which records it
            print(f"[skipped] {cand.structure_id}: {type(exc).__name__}: {exc}", flush=True)
            counts["failed"] += 1
            continue
        meta = {"id": cand.structure_id, **cand.ledger_fields(), "cost": cand.cost, "provenance": rec.provenance,
                "seconds_relax": round(time.time() - t0, 1), "seed": seed, "n_max": n_max, "mlff": mlff,
                "protocol": engine.protocol()}
        (jobs_dir / f"{cand.structure_id}.job.json").write_text(json.dumps(engine.job(rec)))
        (jobs_dir / f"{cand.structure_id}.meta.json").write_text(json.dumps(meta, sort_keys=True))
        counts["written"] += 1
    return counts


def record_from_job(job: dict[str, Any], meta: dict[str, Any]) -> CrystalRecord:
    """The relaxed, unlabelled crystal that ``job`` describes."""
    return CrystalRecord(meta["id"], np.asarray(job["numbers"], dtype=np.int64),
                         np.asarray(job["scaled_positions"], dtype=np.float64),
                         np.asarray(job["cell"], dtype=np.float64), None, dict(meta["provenance"]))


def ingest_jobs(jobs_dir: str | Path, shards_dir: str | Path, shard_size: int = 25,
                host: str | None = None) -> dict[str, int]:
    """Read the worker outputs in ``jobs_dir`` into shards and the offsite ledger of ``shards_dir``.

    Returns ``{"done", "failed", "pending", "retry"}``: labelled, recorded as failed, without output
    yet, and left for a local build (over-complete basis).  A structure labelled already is
    skipped and a failure recorded already (same reason) is not recorded twice, so ingesting again
    changes nothing; the output of a retried failure (``export-jobs --retry-failed``) that
    succeeds supersedes the failure."""
    from dosmatgen.data.store import save_records
    from dosmatgen.dos.gpaw_engine import (GPAWEngineError, GPAWSiteDOSEngine, is_overcomplete_basis_error,
                                           read_worker_output)

    jobs_dir, shards_dir = Path(jobs_dir), Path(shards_dir)
    if not jobs_dir.is_dir():
        raise DataError(f"{jobs_dir} is not a folder of exported jobs")
    shards_dir.mkdir(parents=True, exist_ok=True)
    ledger = read_ledger(shards_dir)
    counts = {"done": 0, "failed": 0, "pending": 0, "retry": 0}
    records: list[CrystalRecord] = []
    done_entries: list[dict[str, Any]] = []
    failed_entries: list[dict[str, Any]] = []
    shard_meta: dict[str, Any] = {}
    common_meta = {"command": f"{command_line()} (jobs exported by python -m dev_scripts.builtin export-jobs)",
                   "versions": versions(), "part": "offsite", "host": host}
    for meta_path in sorted(jobs_dir.glob("*.meta.json")):
        sid = meta_path.name[: -len(".meta.json")]
        out_path = jobs_dir / f"{sid}.out.npz"
        if ledger.get(sid, {}).get("status") == "done":
            continue
        if not out_path.exists():
            counts["pending"] += 1
            continue
        meta = json.loads(meta_path.read_text())
        job = json.loads((jobs_dir / f"{sid}.job.json").read_text())
        rec = record_from_job(job, meta)
        engine = GPAWSiteDOSEngine(maxiter=int(job["maxiter"]), basis=str(job["basis"]))
        shard_meta = dict(common_meta, source=meta.get("source", "prototypes"), seed=meta["seed"],
                          n_max=meta["n_max"], mlff=meta["mlff"], protocol=meta["protocol"])
        entry = {"id": sid, **{k: meta[k] for k in LEDGER_KEYS if k in meta},
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": host}
        try:
            res = read_worker_output(out_path, sid)
            result = engine.result_from_worker(rec, res, str(job["basis"]), float(res["seconds"]))
        except GPAWEngineError as exc:
            if is_overcomplete_basis_error(str(exc)):
                counts["retry"] += 1
                continue
            if ledger.get(sid, {}).get("reason") == str(exc)[:500]:
                continue  # this failure is recorded already (ingest is idempotent)
            failed_entries.append(dict(entry, status="failed", stage="dft", reason=str(exc)[:500]))
            counts["failed"] += 1
            continue
        records.append(engine.labelled_record(rec, result))
        done_entries.append(dict(entry, status="done", seconds=round(meta["seconds_relax"] + result.seconds, 1),
                                 seconds_relax=meta["seconds_relax"], seconds_dft=round(result.seconds, 1),
                                 gap=round(result.gap, 3), spin=result.spin_polarised, natoms=rec.num_atoms))
        counts["done"] += 1
    for start in range(0, len(records), shard_size):
        path = shards_dir / f"{SHARD_PREFIX}{_next_shard_index(shards_dir, SHARD_PREFIX):05d}.npz"
        save_records(path, records[start:start + shard_size], shard_meta)
        entries = done_entries[start:start + shard_size]
        for e in entries:
            e["shard"] = path.name
        _append_ledger(shards_dir, entries, LEDGER_NAME)
    if failed_entries:
        _append_ledger(shards_dir, failed_entries, LEDGER_NAME)
    return counts
